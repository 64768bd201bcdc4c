"""What a Compare row offers on its right-click menu: Benchmark, Open in Playground,
Reveal in file manager, Delete result (asked first; only a folder this app wrote, removed
on a worker) and Copy path.

:class:`RowActions` is a part of :class:`~slimpajama_gui.qt.compare.view.CompareView`
and reads its table, rows, history store and signals.
"""

from __future__ import annotations

import logging
from pathlib import Path
from typing import TYPE_CHECKING

from PySide6.QtCore import QPoint, QUrl
from PySide6.QtGui import QDesktopServices, QGuiApplication
from PySide6.QtWidgets import QMenu, QMessageBox

from slimpajama_gui.core.jobs.index import Variant
from slimpajama_gui.core.jobs.remeasure import app_written, delete_variant
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.qt.widgets.errors import error_sentence
from slimpajama_gui.qt.widgets.workers import start_worker

if TYPE_CHECKING:
    from slimpajama_gui.qt.compare.view import CompareView

log = logging.getLogger(__name__)


class RowActions:
    """The right-click menu of Compare's table and what its entries do."""

    def row_at(self: CompareView, pos: QPoint) -> int | None:
        index = self.table.indexAt(pos)
        return self.proxy.mapToSource(index).row() if index.isValid() else None

    def context_menu(self: CompareView, row: int) -> QMenu:
        """The actions on ``variants[row]`` (the table's right-click menu)."""
        v = self.variants[row]
        menu = QMenu(self)
        bench = menu.addAction("Benchmark", lambda: self.benchmark(row))
        bench.setEnabled(v.key not in self._benchmarking)
        menu.addAction("Open in Playground", lambda: self._open_in_playground(row))
        menu.addAction("Reveal in file manager", lambda: self.reveal(row))
        menu.addSeparator()
        delete = menu.addAction("Delete result…", lambda: self.delete_result(row))
        if v.is_source:
            delete.setEnabled(False)
            delete.setToolTip("A source model is yours: Compare never deletes it")
        menu.addAction("Copy path", lambda: QGuiApplication.clipboard().setText(str(v.path)))
        menu.setToolTipsVisible(True)
        return menu

    def _context_menu(self: CompareView, pos: QPoint) -> None:
        row = self.row_at(pos)
        if row is not None:
            self.context_menu(row).popup(self.table.viewport().mapToGlobal(pos))

    def _open_in_playground(self: CompareView, row: int) -> None:
        v = self.variants[row]
        other = v.parent or v.source_model
        self.open_in_playground.emit(Path(other) if other else None, v.path)

    def reveal(self: CompareView, row: int) -> bool:
        """Open the folder of ``variants[row]`` in the system's file manager."""
        return QDesktopServices.openUrl(QUrl.fromLocalFile(str(self.variants[row].path)))

    def delete_result(self: CompareView, row: int) -> bool:
        """Ask, then delete the folder of ``variants[row]`` if the app wrote it.

        A source model, or any folder without the app's record or history row, is never
        deleted: the user gets a sentence instead. The folder is removed on a worker (a
        large model takes a while) under its output's lock; Compare reloads when it is
        gone. Returns whether the deletion was started.
        """
        v = self.variants[row]
        store = self.store or JobStore()
        try:
            written = app_written(v, store)
        finally:
            if store is not self.store:
                store.close()
        if not written:
            QMessageBox.information(
                self,
                "Delete result",
                f"{v.path} is not a result this app saved (a source model, or a folder "
                "without its slimpajama.json); Compare does not delete it.",
            )
            return False
        answer = QMessageBox.question(
            self,
            "Delete result",
            f"Delete the folder {v.path} and everything in it?\n\nIts weights, record "
            "and stored predictions go; the job's history stays. This cannot be undone.",
            QMessageBox.StandardButton.Yes | QMessageBox.StandardButton.No,
            QMessageBox.StandardButton.No,
        )
        if answer != QMessageBox.StandardButton.Yes:
            return False
        start_worker(
            _delete_variant,
            v,
            self.store.path if self.store is not None else None,
            workers=self._workers,
            returned=self._on_deleted,
            errored=lambda exc: self._on_delete_failed(v, exc),
        )
        return True

    def _on_deleted(self: CompareView, path: Path) -> None:
        self.status_message.emit(f"Deleted {path}")
        self.refresh()
        self.result_deleted.emit(path)

    def _on_delete_failed(self: CompareView, v: Variant, exc: BaseException) -> None:
        text = error_sentence(exc, f"Deleting {v.name}", logger=log)
        self._bench_text(f'<span style="color:#a1261b">{text}</span>')


def _delete_variant(variant: Variant, history: Path | None) -> Path:
    """Runs on a worker, with its own connection to the history (SQLite connections
    stay on the thread that opened them)."""
    with JobStore(history) as store:
        delete_variant(variant, store)
    return variant.path
