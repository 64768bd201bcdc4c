"""The review page's "Run on a cluster…": the torchrun commands for a saved recipe.

The commands come from :func:`~slimpajama_gui.core.plan.launch.torchrun_commands`; the
dialog only asks how many processes and machines, and where the first machine listens.
"""

from __future__ import annotations

import socket
from pathlib import Path

from PySide6.QtGui import QFontDatabase, QGuiApplication
from PySide6.QtWidgets import (
    QDialog,
    QDialogButtonBox,
    QFormLayout,
    QLineEdit,
    QPlainTextEdit,
    QPushButton,
    QVBoxLayout,
    QWidget,
)

from slimpajama_gui.core.plan.launch import (
    DEFAULT_PORT,
    NODES,
    PORTS,
    PROCESSES,
    torchrun_commands,
)
from slimpajama_gui.core.plan.presets import slug
from slimpajama_gui.qt.wizard.numbers import number_problems
from slimpajama_gui.qt.wizard.widgets import NOTE_STYLE, int_spin, make_label


class ClusterDialog(QDialog):
    """Shows the exact ``torchrun`` commands that run ``recipe_path``, ready to copy."""

    def __init__(
        self, recipe_path: Path, job_name: str, device: str, parent: QWidget | None = None
    ) -> None:
        super().__init__(parent)
        self.setWindowTitle("Run on a cluster")
        self.recipe_path = recipe_path
        self.job = slug(job_name) or "slimpajama"
        self.processes = int_spin(
            "Processes per machine", PROCESSES, 2,
            tip="Processes per machine: one per GPU; on CPUs, a few (each uses its own threads)",
        )  # fmt: skip
        self.nodes = int_spin(
            "Machines", NODES, 1,
            tip="Machines; with more than one, run the command for each on it",
        )  # fmt: skip
        self.host = QLineEdit(socket.gethostname())
        self.host.setToolTip("The first machine's name or address, reachable from the others")
        self.port = int_spin("Port", PORTS, DEFAULT_PORT)
        self.commands = QPlainTextEdit()
        self.commands.setReadOnly(True)
        self.commands.setLineWrapMode(QPlainTextEdit.LineWrapMode.WidgetWidth)
        self.commands.setFont(QFontDatabase.systemFont(QFontDatabase.SystemFont.FixedFont))
        self.copy_button = QPushButton("Copy")
        self.copy_button.setToolTip("Copy the commands to the clipboard")
        self.status = make_label("", NOTE_STYLE)
        where = "one GPU per process (nccl)" if device != "cpu" else "the CPU (gloo)"
        if device == "auto":
            where = "one GPU per process where the machines have GPUs (nccl), else the CPU (gloo)"
        note = make_label(
            f"Saved to {recipe_path}. Every machine needs this file, the model and the data "
            f"at the same paths, and this app installed. Training runs on {where}; "
            "every process trains on its share of each batch, and only the first process "
            "(rank 0) writes the results and the job history, on its own machine. "
            "Ctrl+C stops every process.",
            NOTE_STYLE,
        )

        form = QFormLayout()
        form.addRow("Processes per machine:", self.processes)
        form.addRow("Machines:", self.nodes)
        form.addRow("First machine:", self.host)
        form.addRow("Port:", self.port)
        buttons = QDialogButtonBox(QDialogButtonBox.StandardButton.Close)
        buttons.addButton(self.copy_button, QDialogButtonBox.ButtonRole.ActionRole)
        layout = QVBoxLayout(self)
        layout.addWidget(note)
        layout.addLayout(form)
        layout.addWidget(self.commands, 1)
        layout.addWidget(self.status)
        layout.addWidget(buttons)
        self.resize(760, 420)

        buttons.rejected.connect(self.reject)
        self.copy_button.clicked.connect(self.copy)
        for spin in (self.processes, self.nodes, self.port):
            spin.typed.connect(self.refresh)  # every keystroke, a number or not
        self.host.textChanged.connect(self.refresh)
        self.refresh()

    def refresh(self) -> None:
        several = self.nodes.value() > 1
        self.host.setEnabled(several)
        self.port.setEnabled(several)
        problems = number_problems(self)
        if problems:  # a number typed out of range stays as typed, and makes no command
            self.commands.setPlainText("")
            self.status.setText(f"No command yet: {problems[0]}")
            self.copy_button.setEnabled(False)
            return
        try:
            lines = torchrun_commands(
                self.recipe_path,
                processes=self.processes.value(),
                nodes=self.nodes.value(),
                host=self.host.text(),
                port=self.port.value(),
                job=self.job,
            )
        except ValueError as exc:
            self.commands.setPlainText("")
            self.status.setText(f"No command yet: {exc}.")
            self.copy_button.setEnabled(False)
            return
        if several:
            lines = [
                f"# on machine {rank}{' (the first: it writes the results)' if rank == 0 else ''}\n"
                + line
                for rank, line in enumerate(lines)
            ]
        self.commands.setPlainText("\n".join(lines))
        self.status.setText("")
        self.copy_button.setEnabled(True)

    def copy(self) -> None:
        QGuiApplication.clipboard().setText(self.commands.toPlainText())
        self.status.setText("Copied to the clipboard.")
