"""benchmarks/headline_sst2.py: a chain run as two jobs is described and timed as one."""

from __future__ import annotations

import time
from pathlib import Path

import pytest

from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord

REPO = Path(__file__).resolve().parents[2]


@pytest.fixture
def headline(monkeypatch):
    monkeypatch.syspath_prepend(str(REPO / "benchmarks"))
    import headline_sst2

    return headline_sst2


def _variant(folder: Path, job: int, step: dict, parent: Path | None) -> Path:
    folder.mkdir(parents=True)
    VariantRecord(job_id=job, step=step, parent=str(parent) if parent else None).write(folder)
    return folder


def test_the_steps_and_jobs_of_a_chain_are_read_back_to_the_teacher(
    headline, tmp_path, monkeypatch
):
    monkeypatch.setenv("SLIMPAJAMA_HOME", str(tmp_path / "home"))
    with JobStore() as store:
        jobs = []
        for name in ("teacher", "distill on all rows", "vocabulary and int8"):
            job = store.create_job(name, "", None)
            store.mark_running(job)
            time.sleep(0.01)  # a duration above 0 (a job of 0 s reads as unknown)
            store.finish(job, "done")
            jobs.append(job)
    teacher = _variant(tmp_path / "teacher", jobs[0], {"type": "finetune"}, None)
    distill = _variant(tmp_path / "a" / "01-distill", jobs[1], {"type": "distill"}, teacher)
    prune = _variant(tmp_path / "b" / "01-prune", jobs[2], {"type": "prune"}, distill)
    quant = _variant(tmp_path / "b" / "02-quantize", jobs[2], {"type": "quantize"}, prune)

    steps = headline.lineage(quant, teacher)
    assert [s["type"] for s in steps] == ["distill", "prune", "quantize"]
    minutes, names = headline.job_minutes(quant, stop=teacher)
    assert names == "distill on all rows' + 'vocabulary and int8"  # the teacher's apart
    with JobStore() as store:  # the two chain jobs' durations, the teacher's not
        durations = [store.get_job(j).duration for j in jobs]
    assert minutes == pytest.approx(sum(durations[1:]) / 60)
    minutes_teacher, name = headline.job_minutes(teacher)
    assert name == "teacher" and minutes_teacher == pytest.approx(durations[0] / 60)
