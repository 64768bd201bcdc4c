"""docs/reliability.md O3/F4 through the window: the app's start puts back an output
that a kill cut between the two renames of a save, in every folder the history knows."""

from __future__ import annotations

from pathlib import Path

from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.jobs_view import JobsView


def test_O3_the_app_start_restores_an_output_cut_between_the_renames(qtbot, tmp_path: Path):
    out = tmp_path / "out"
    previous = out / ".01-finetune.old-0a1b2c3d"
    previous.mkdir(parents=True)
    (previous / "model.safetensors").write_bytes(b"previous weights")
    (out / ".02-prune.staging-4e5f6a7b").mkdir()
    (out / ".my-notes").mkdir()  # the user's own hidden folder
    with JobStore() as history:  # a finished job: not only interrupted ones are swept
        job = history.create_job("j", "name: j\n", str(out))
        history.finish(job, "done")

    view = JobsView()
    qtbot.addWidget(view)
    qtbot.waitUntil(lambda: (out / "01-finetune").is_dir(), timeout=30_000)

    assert (out / "01-finetune" / "model.safetensors").read_bytes() == b"previous weights"
    qtbot.waitUntil(
        lambda: sorted(p.name for p in out.iterdir()) == [".my-notes", "01-finetune"],
        timeout=30_000,
    )
    assert view.shutdown(5)
