"""The review page's "Run on a cluster…": saves the recipe, shows torchrun commands to copy."""

from __future__ import annotations

import shlex

from PySide6.QtGui import QGuiApplication
from PySide6.QtWidgets import QFileDialog

from slimpajama_gui.core.plan.recipe import load_recipe
from tests.qt import test_wizard
from tests.qt.test_wizard import click, go_next

# The wizard's fixtures, shared with its own tests.
make_wizard = test_wizard.make_wizard
on_techniques = test_wizard.on_techniques


def test_run_on_a_cluster_saves_and_shows_the_torchrun_commands(
    qtbot,
    on_techniques,
    tmp_path,
    monkeypatch,
):
    w = on_techniques
    go_next(qtbot, w)
    go_next(qtbot, w)
    review = w.review_page
    target = tmp_path / "cluster jobs" / "sst2.yaml"  # a space: the command quotes it
    monkeypatch.setattr(
        QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: (str(target), ""))
    )
    click(qtbot, review.cluster_button)
    assert target.is_file() and load_recipe(target) == w.recipe()
    dialog = review.cluster_dialog
    assert dialog is not None and dialog.isVisible()

    # One machine: one command that runs the saved file.
    dialog.processes.setValue(4)
    (line,) = dialog.commands.toPlainText().splitlines()
    assert shlex.split(line) == [
        "torchrun", "--standalone", "--nproc_per_node=4",
        "-m", "slimpajama_gui.cli", "run", str(target),
    ]  # fmt: skip
    assert not dialog.host.isEnabled()

    # Two machines: one command each, with its node rank and the rendezvous endpoint.
    dialog.nodes.setValue(2)
    dialog.host.setText("gpu-a.example")
    dialog.port.setValue(29600)
    commands = [c for c in dialog.commands.toPlainText().splitlines() if c.startswith("torchrun")]
    assert len(commands) == 2
    for rank, command in enumerate(commands):
        args = shlex.split(command)
        assert {"--nnodes=2", "--nproc_per_node=4", f"--node_rank={rank}", "--rdzv_backend=c10d",
                "--rdzv_endpoint=gpu-a.example:29600"} <= set(args)  # fmt: skip
        assert args[-3:] == ["slimpajama_gui.cli", "run", str(target)][-3:]

    dialog.host.setText("")  # several machines need an address
    assert dialog.commands.toPlainText() == "" and not dialog.copy_button.isEnabled()
    assert "first machine's host name" in dialog.status.text()
    dialog.host.setText("gpu-a.example")
    # A port out of range stays as typed (a spin box put back its last value) and
    # makes no command until it is fixed.
    dialog.port.setFocus()
    dialog.port.selectAll()
    qtbot.keyClicks(dialog.port, "70000")
    assert dialog.port.text() == "70000" and not dialog.copy_button.isEnabled()
    assert dialog.status.text() == (
        "No command yet: Port: 70000 is too large; type a whole number from 1 to 65,535."
    )
    dialog.port.setValue(29600)
    click(qtbot, dialog.copy_button)
    assert QGuiApplication.clipboard().text() == dialog.commands.toPlainText()
    assert "--node_rank=1" in QGuiApplication.clipboard().text()


def test_cancelling_the_file_dialog_shows_no_commands(
    qtbot,
    on_techniques,
    monkeypatch,
):
    w = on_techniques
    go_next(qtbot, w)
    go_next(qtbot, w)
    monkeypatch.setattr(QFileDialog, "getSaveFileName", staticmethod(lambda *a, **k: ("", "")))
    click(qtbot, w.review_page.cluster_button)
    assert w.review_page.cluster_dialog is None
