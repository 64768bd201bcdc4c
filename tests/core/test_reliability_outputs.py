"""How jobs write their outputs: nothing lost, nothing the app did not make replaced.

docs/reliability.md F2, F4, F7, F8, O1, O2, O3 (issue 14, kinds 1 and 3). The kill test
runs ``benchmarks/kill_save.py``'s loop: a child process saving a tiny classifier is
killed with SIGKILL, and after each kill the recovery the app and the CLI run at start
must leave the previous output or the complete new one, loading and predicting as it did.
"""

from __future__ import annotations

import errno
import hashlib
import importlib.util
import os
import signal
import sys
from pathlib import Path

import pytest

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, recipe_for_rerun, run
from slimpajama_gui.core.plan.recipe import RecipeError, recipe_from_yaml
from slimpajama_gui.core.runtime.predictor import ModelPredictor
from slimpajama_gui.core.storage import atomic, variant
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.locks import OutputLock
from slimpajama_gui.core.storage.variant import VariantRecord, check_replaceable
from slimpajama_gui.core.techniques.hooks import Control

REPO = Path(__file__).resolve().parents[2]
TEXTS = ["a good film", "the plot was boring and bad"]

FINETUNE = """
  - type: finetune
    epochs: 1
    learning_rate: 3.0e-3
    batch_size: 32
    seed: 1
"""


def make_recipe(model: Path | str, output: Path | str, steps: str = FINETUNE, base: Path = None):
    text = f"""
name: outputs
model: {model}
dataset:
  train: demo
  labels: [negative, positive]
  max_length: 32
output: {output}
steps:
{steps}
"""
    return recipe_from_yaml(text, source="test.yaml", base_dir=base or Path(output).parent)


@pytest.fixture
def store(tmp_path):
    with JobStore(tmp_path / "history.sqlite3") as s:
        yield s


def snapshot(folder: Path) -> dict[str, str]:
    return {
        str(p.relative_to(folder)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.rglob("*"))
        if p.is_file()
    }


def hidden(folder: Path) -> list[str]:
    """What a save could leave behind: hidden names (the lock file sits in the parent)."""
    return sorted(p.name for p in folder.iterdir() if p.name.startswith("."))


def own_variant(folder: Path, source: Path) -> Path:
    """A variant the app saved earlier: the source model's files and a record."""
    folder.mkdir(parents=True)
    for f in source.iterdir():
        if f.is_file():
            (folder / f.name).write_bytes(f.read_bytes())
    VariantRecord(label_names=["negative", "positive"], job_id=1, step_index=0).write(folder)
    return folder


class Steps(PipelineCallbacks):
    def __init__(self) -> None:
        self.started: list[int] = []

    def on_step_start(self, index, step, count):
        self.started.append(index)


# --------------------------------------------------------------------------- kind 1 / O1


def test_kind1_O1_a_folder_the_user_made_is_never_replaced(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    mine = out / "01-finetune"
    mine.mkdir(parents=True)
    (mine / "thesis.txt").write_text("my only copy", encoding="utf-8")
    before = snapshot(out)

    steps = Steps()
    result = run(make_recipe(tiny_minilm, out), steps, store=store)

    assert result.status == "failed"
    assert str(mine) in result.error and "was not saved by SlimPajama Studio" in result.error
    assert "move or rename that folder" in result.error
    assert steps.started == []  # refused before step 1, not after the training
    assert snapshot(out) == before and hidden(out) == []
    assert store.get_job(result.job_id).status == "failed"


@pytest.mark.parametrize("kind", ["file", "link"])
def test_kind1_O1_a_file_or_link_under_a_results_name_is_left_alone(
    tiny_minilm, tmp_path, store, kind
):
    out = tmp_path / "out"
    out.mkdir()
    elsewhere = own_variant(tmp_path / "elsewhere", tiny_minilm)  # even one of ours
    if kind == "file":
        (out / "01-finetune").write_text("notes")
    else:
        (out / "01-finetune").symlink_to(elsewhere, target_is_directory=True)
    before = snapshot(elsewhere), os.readlink(out / "01-finetune") if kind == "link" else None

    result = run(make_recipe(tiny_minilm, out), store=store)

    assert result.status == "failed" and f"is a {kind}" in result.error
    assert (snapshot(elsewhere), before[1]) == before
    assert (out / "01-finetune").is_symlink() == (kind == "link")
    assert hidden(out) == []


def test_kind1_O1_a_folder_that_appears_while_the_job_runs_is_not_replaced(tmp_path):
    """The check is made again at the swap: minutes of training lie between."""
    target = tmp_path / "out" / "01-finetune"
    refused = pytest.raises(UserError, match="was not saved by SlimPajama Studio")
    with refused, atomic.atomic_dir(target, check_target=check_replaceable) as staging:
        (staging / "model.safetensors").write_bytes(b"new")
        target.mkdir()
        (target / "thesis.txt").write_text("made meanwhile")
    assert snapshot(target) == {"thesis.txt": hashlib.sha256(b"made meanwhile").hexdigest()}
    assert hidden(target.parent) == []


def test_kind1_a_result_the_app_saved_is_replaced(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    own_variant(out / "01-finetune", tiny_minilm)
    result = run(make_recipe(tiny_minilm, out), store=store)
    assert result.status == "done", result.error
    assert VariantRecord.read(out / "01-finetune").job_id == result.job_id
    assert sorted(p.name for p in out.iterdir()) == ["01-finetune"]


# --------------------------------------------------------------------------- O2 / F8


@pytest.mark.parametrize("spelling", ["plain", "link", "dotdot", "output-link"])
def test_O2_a_source_model_inside_the_output_folder_is_never_overwritten(
    tiny_minilm, tmp_path, store, spelling
):
    """The source is an earlier result, OUT/01-finetune, and the recipe writes OUT: its
    step 1 would replace its own source, however the paths are spelled."""
    out = tmp_path / "out"
    source = own_variant(out / "01-finetune", tiny_minilm)
    (tmp_path / "alias").symlink_to(source, target_is_directory=True)
    (tmp_path / "out-alias").symlink_to(out, target_is_directory=True)
    (out / "sub").mkdir()
    model, output = {
        "plain": (source, out),
        "link": (tmp_path / "alias", out),
        "dotdot": (f"{out}/sub/../01-finetune", out),
        "output-link": (source, tmp_path / "out-alias"),
    }[spelling]
    before = snapshot(out)

    result = run(make_recipe(model, output, base=tmp_path), store=store)

    assert result.status == "failed"
    assert "would overwrite the source model" in result.error
    assert snapshot(out) == before and hidden(out) == []


def test_O2_rerun_writes_a_new_folder_and_never_touches_the_earlier_result(
    tiny_minilm, tmp_path, store
):
    out = tmp_path / "out"
    first = run(make_recipe(tiny_minilm, out), store=store)
    assert first.status == "done", first.error
    before = snapshot(out)

    again = run(recipe_for_rerun(store.get_job(first.job_id)), store=store)

    assert again.status == "done", again.error
    assert again.final == tmp_path / "out-run2" / "01-finetune"
    assert snapshot(out) == before


def test_F8_output_folder_equal_to_the_source_model_folder_is_refused(tiny_minilm, tmp_path):
    (tmp_path / "alias").symlink_to(tiny_minilm, target_is_directory=True)
    for output in (tiny_minilm, tmp_path / "alias", tiny_minilm / "x" / ".."):
        with pytest.raises(RecipeError, match="source model folder"):
            make_recipe(tiny_minilm, output, base=tmp_path).validate()


def test_F7_a_second_job_on_the_same_output_folder_is_refused(tiny_minilm, tmp_path, store):
    out = tmp_path / "out"
    out.mkdir()
    (tmp_path / "alias").symlink_to(out, target_is_directory=True)
    with OutputLock(tmp_path / "alias", job_id=99):
        result = run(make_recipe(tiny_minilm, out), store=store)
    assert result.status == "failed" and "already being written" in result.error
    assert list(out.iterdir()) == []


# --------------------------------------------------------------------------- F2


def test_F2_disk_full_while_saving_keeps_the_old_output_and_fails_with_the_reason(
    tiny_minilm, tmp_path, store, monkeypatch
):
    out = tmp_path / "out"
    own_variant(out / "01-finetune", tiny_minilm)
    before = snapshot(out)
    real = variant.atomic_write_text

    def full(path, text):
        if ".staging-" in str(path):  # the new variant's record, inside the staging folder
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), str(path))
        real(path, text)

    monkeypatch.setattr(variant, "atomic_write_text", full)

    result = run(make_recipe(tiny_minilm, out), store=store)

    assert result.status == "failed"
    assert "No space left on device" in result.error and "free space" in result.error
    assert "the previous 01-finetune is unchanged" in result.error
    assert "internal error" not in result.error
    assert snapshot(out) == before and hidden(out) == []
    assert store.variants(result.job_id) == []


def test_kind3_a_failed_second_rename_puts_the_previous_output_back(tmp_path, monkeypatch):
    target = tmp_path / "01-finetune"
    target.mkdir()
    (target / "model.safetensors").write_bytes(b"previous")
    monkeypatch.setattr(atomic, "_exchange", lambda a, b: False)
    real = os.replace

    def replace(src, dst):
        if ".staging-" in str(src):
            raise OSError(errno.EIO, os.strerror(errno.EIO))
        real(src, dst)

    monkeypatch.setattr(atomic.os, "replace", replace)
    refused = pytest.raises(UserError, match="the previous 01-finetune is unchanged")
    with refused, atomic.atomic_dir(target) as staging:
        (staging / "model.safetensors").write_bytes(b"new")
    assert (target / "model.safetensors").read_bytes() == b"previous"
    assert hidden(tmp_path) == []


# --------------------------------------------------------------------------- F4 / kind 3


def test_F4_cancel_during_a_save_waits_for_it_and_the_history_records_the_variant(
    tiny_minilm, tmp_path, store, monkeypatch
):
    out = tmp_path / "out"
    control = Control()
    real = variant.atomic_write_text

    def cancel_while_saving(path, text):
        if ".staging-" in str(path):
            control.request_stop()  # the GUI's Cancel, mid-save
        real(path, text)

    monkeypatch.setattr(variant, "atomic_write_text", cancel_while_saving)
    result = run(make_recipe(tiny_minilm, out, FINETUNE + FINETUNE), None, control, store=store)

    assert result.status == "cancelled"
    assert result.variants == [out / "01-finetune"]
    assert [v.path for v in store.variants(result.job_id)] == [str(out / "01-finetune")]
    assert ModelPredictor(out / "01-finetune").scores(TEXTS).probs.shape == (2, 2)
    assert sorted(p.name for p in out.iterdir()) == ["01-finetune"]


def test_kind3_ctrl_c_during_a_save_is_held_until_the_variant_is_recorded(
    tiny_minilm, tmp_path, store, monkeypatch
):
    """Ctrl+C in the CLI once reported "cancelled" with the new variant in place and no
    record of it; now the save ends, is recorded, and then the interrupt goes on."""
    out = tmp_path / "out"
    real = variant.atomic_write_text

    def interrupt_while_saving(path, text):
        if ".staging-" in str(path):
            os.kill(os.getpid(), signal.SIGINT)
        real(path, text)

    monkeypatch.setattr(variant, "atomic_write_text", interrupt_while_saving)
    with pytest.raises(KeyboardInterrupt):
        run(make_recipe(tiny_minilm, out, FINETUNE + FINETUNE), store=store)

    job = store.list_jobs(limit=1)[0]
    assert job.status == "cancelled"
    assert [v.path for v in store.variants(job.id)] == [str(out / "01-finetune")]
    assert VariantRecord.read(out / "01-finetune").job_id == job.id
    assert sorted(p.name for p in out.iterdir()) == ["01-finetune"]


def _kill_save():
    spec = importlib.util.spec_from_file_location("kill_save", REPO / "benchmarks" / "kill_save.py")
    module = importlib.util.module_from_spec(spec)
    sys.modules.setdefault("kill_save", module)  # its dataclasses look their module up
    spec.loader.exec_module(module)
    return module


def test_kind3_O3_F4_kill_9_at_any_instant_of_a_save_loses_no_output(tmp_path):
    """22 SIGKILLs of a process saving a tiny classifier (4 at fixed points, two of them
    between the two renames; 18 at random moments); after each, the recovery at start."""
    kill_save = _kill_save()

    kills = kill_save.run(tmp_path, kills=22, seed=14)

    assert len(kills) == 22
    between = [k for k in kills if k.mode == "between-renames"]
    # Between the renames the name is empty until the recovery puts the previous back.
    assert all(k.missing_before_recovery and k.outcome == k.previous for k in between)
    for k in kills:
        assert k.outcome in ("A", "B"), k  # the previous output or the complete new one
        assert k.same_predictions, k  # it loads and predicts exactly as that version did
        assert k.debris_after == [], k
    assert sorted(p.name for p in (tmp_path / "out").iterdir()) == ["01-finetune"]


def test_kind3_O3_the_cli_start_restores_an_output_cut_between_the_renames(
    tiny_minilm, tmp_path, capsys
):
    """What a kill between the renames leaves, put right by any CLI command's start,
    in the folders the history knows only, and only the app's own debris names."""
    from slimpajama_gui import cli

    out = tmp_path / "out"
    out.mkdir()
    previous = own_variant(out / ".01-finetune.old-0a1b2c3d", tiny_minilm)
    expected = snapshot(previous)
    (out / ".01-finetune.staging-4e5f6a7b").mkdir()
    (out / ".01-finetune.staging-4e5f6a7b" / "model.safetensors").write_bytes(b"half")
    (out / ".02-prune.trash-00112233").mkdir()
    (out / ".my-notes").mkdir()  # the user's, not a name the app writes
    unknown = tmp_path / "not-in-history"
    (unknown / ".01-finetune.staging-4e5f6a7b").mkdir(parents=True)
    with JobStore() as history:  # the user's history (SLIMPAJAMA_HOME of this test)
        history.create_job("j", "name: j\n", str(out))

    assert cli.main(["history"]) == 0

    assert snapshot(out / "01-finetune") == expected
    assert sorted(p.name for p in out.iterdir()) == [".my-notes", "01-finetune"]
    assert (unknown / ".01-finetune.staging-4e5f6a7b").is_dir()
