"""What ``slimpajama run`` shows while a job runs: a progress bar and one line per event.

Apart from :mod:`slimpajama_gui.cli` (the commands and their arguments) because it is
the pipeline's callbacks for a terminal, the CLI's counterpart of the window's bridge.
"""

from __future__ import annotations

import time

from slimpajama_gui.core.units import human_duration


class ProgressCallbacks:
    """Pipeline events → a rich progress bar and one line per evaluation."""

    def __init__(self, console) -> None:
        from rich.progress import (
            BarColumn,
            Progress,
            TextColumn,
            TimeElapsedColumn,
            TimeRemainingColumn,
        )

        self.console = console
        self.progress = Progress(
            TextColumn("{task.description}"),
            BarColumn(),
            TextColumn("{task.completed}/{task.total}"),
            TimeElapsedColumn(),
            TimeRemainingColumn(),
            TextColumn("{task.fields[info]}"),
            TextColumn("[dim]{task.fields[job]}"),
            console=console,
            transient=False,
        )
        self.task = None
        self.overall = ""
        self._last_line = time.monotonic()

    # PipelineCallbacks protocol -------------------------------------------------
    def on_job_start(self, job_id, recipe) -> None:
        self.console.print(f"Job {job_id}: [bold]{recipe.name}[/bold] ({len(recipe.steps)} steps)")
        self.progress.start()

    def on_message(self, text: str) -> None:
        # Jobs report both findings (a guard's choices, a vocabulary summary) and
        # warnings through one channel; "note" is true of both, "warning" was not.
        self.progress.console.print(f"[cyan]note:[/cyan] {text}")

    def on_warning(self, text: str) -> None:
        """A setting that is valid but almost surely a mistake (``Recipe.warnings``)."""
        self.progress.console.print(f"[bold yellow]warning:[/bold yellow] {text}")

    def on_step_start(self, index, step, count) -> None:
        self._close_task()
        self.task = self.progress.add_task(
            f"step {index + 1}/{count} {step.step_type}", total=None, info="", job=self.overall
        )

    def on_progress(self, index, done, total) -> None:
        if self.task is not None:
            self.progress.update(self.task, completed=done, total=total)

    def on_overall(self, fraction, remaining_s, measured) -> None:
        # The job's share by step cost; time left only once measured, else labelled.
        if remaining_s is None:
            left = "time left: estimating…"
        elif measured:
            left = f"about {human_duration(remaining_s)} left"
        else:
            left = f"≈ {human_duration(remaining_s)} left (estimate)"
        self.overall = f"job {100 * fraction:.0f} %, {left}"
        if self.task is not None:
            self.progress.update(self.task, job=self.overall)

    def on_log(self, index, metrics) -> None:
        if self.task is not None and "loss" in metrics:
            info = f"loss {metrics['loss']:.4f}  lr {metrics.get('lr', 0):.2e}"
            self.progress.update(self.task, info=info)
            # Without a terminal the bar is not redrawn; a log file still gets a line every 30 s.
            if not self.console.is_terminal and time.monotonic() - self._last_line > 30:
                self._last_line = time.monotonic()
                task = self.progress.tasks[-1]
                rate = metrics.get("examples_per_second", 0)
                self.console.print(
                    f"  step {task.completed}/{task.total}  {info}  {rate:.1f} examples/s"
                )

    def on_eval(self, index, metrics) -> None:
        shown = {k: v for k, v in metrics.items() if isinstance(v, float) and "accuracy" in k}
        if shown:
            text = "  ".join(f"{k} {100 * v:.2f} %" for k, v in shown.items())
            step = metrics.get("step")
            self.progress.console.print(f"  eval{f' at step {step}' if step else ''}: {text}")

    def on_variant(self, index, path, record) -> None:
        self.progress.console.print(f"  saved {path}")

    def on_step_end(self, index, step, summary) -> None:
        self._close_task()

    def on_end(self, status, error) -> None:
        self._close_task()
        self.progress.stop()

    def _close_task(self) -> None:
        if self.task is not None:
            t = self.progress.tasks[-1]
            if t.total is None:
                self.progress.update(self.task, total=1, completed=1)
            self.task = None
