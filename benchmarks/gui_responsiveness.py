"""Does the window stay responsive while a job trains, stops or a model loads? Event-loop stalls.

    .venv/bin/python benchmarks/gui_responsiveness.py            # MiniLM, 60 steps; a few minutes
    .venv/bin/python benchmarks/gui_responsiveness.py --quick    # a tiny model, seconds; tests use it

Starts the real main window (offscreen unless a display is set), shows the Jobs area
and submits a real fine-tune of the packaged MiniLM on the built-in demo data through
the Jobs area, exactly as the Compress wizard does; the job logs every training step.
While it runs:

- a 10 ms ``QTimer`` on the GUI thread records when it fires. Each gap between two
  ticks longer than 10 ms is time the event loop could not run (the GIL held by the
  training thread, or slow work on the GUI thread). Reported: the largest gap, p50/p99,
  and how many gaps exceeded 50 ms (a delay a person notices when typing or dragging);
- every ``LiveCurves.flush`` of the Jobs area's live charts is counted (charts.py: one
  80 ms single-shot refresh per chart, restarted by the first new point) — how many
  redraws with new data happen per second while training logs arrive, how many
  ``setData`` calls that is, and how long a logged loss waits before it is drawn.

Then, in the same window (the unit tests check that these run off the GUI thread; how
fast is this script's business):

- **Cancel.** The same fine-tune with 100 times the steps; at its first training log the Jobs
  area's Cancel button is clicked. Seconds from the click until the job's end reaches
  the GUI thread (the row says "cancelled"). Target: under 2 s.
- **Playground.** Both Playground models (the model the job started from and its result)
  load and predict a sentence, cold. Seconds until both predictions are shown, and the
  event-loop gaps meanwhile. Target: no gap over 500 ms.

Writes the "gui-responsiveness" section of docs/benchmarks.md (not with --quick).
"""

from __future__ import annotations

import argparse
import os
import shutil
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

PROBE_MS = 10
STALL_MS = 50
CANCEL_TARGET_S = 2.0
PLAYGROUND_GAP_TARGET_MS = 500

RECIPE = """\
version: 1
name: responsiveness
model: {model}
dataset:
  train: demo
  labels: [negative, positive]
  max_length: 64
output: "{{data}}/results/responsiveness"
steps:
  - {{type: finetune, epochs: 3, max_steps: {steps}, batch_size: 16, learning_rate: 1.0e-4,
      log_every_steps: 1, eval_every_steps: {eval_every}}}
"""


@dataclass
class Probe:
    """What the GUI thread saw while the job ran."""

    ticks: list[float] = field(default_factory=list)
    logs: list[float] = field(default_factory=list)  # training logs reaching the GUI thread
    redraws: list[float] = field(default_factory=list)  # flushes that drew new points
    loss_redraws: list[float] = field(default_factory=list)  # those of the loss chart
    empty_flushes: int = 0
    set_data: int = 0
    draw_delays: list[float] = field(default_factory=list)  # log → loss chart drawn, s
    pending: list[float] = field(default_factory=list)
    started: float | None = None
    finished: float | None = None
    # Start-up: from the window showing until the app's warm-up imports are done.
    startup_ticks: list[float] = field(default_factory=list)
    shown: float | None = None
    warm: float | None = None
    warm_seconds: float = float("nan")
    # The playground phase: ticks while its models load and predict.
    playground_ticks: list[float] = field(default_factory=list)
    playground_active: bool = False
    playground_seconds: float = float("nan")
    cancel_seconds: float = float("nan")
    cancel_status: str = "not run"

    def tick(self) -> None:
        now = time.perf_counter()
        if self.playground_active:
            self.playground_ticks.append(now)
        if self.shown is not None and self.warm is None:
            self.startup_ticks.append(now)
        if self.started is not None and self.finished is None:
            self.ticks.append(now)

    def gaps_ms(self) -> list[float]:
        return [1000 * (b - a) for a, b in zip(self.ticks, self.ticks[1:], strict=False)]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    if not ordered:
        return float("nan")
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def tiny_model(folder: Path) -> Path:
    """A 2-layer BERT classifier with the MiniLM tokenizer (as tests/conftest.py builds it)."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from slimpajama_gui.core.model.catalog import packaged_minilm_path
    from slimpajama_gui.core.model.saving import copy_tokenizer_files

    torch.manual_seed(0)
    folder.mkdir(parents=True, exist_ok=True)
    config = BertConfig(
        vocab_size=30522, hidden_size=32, num_hidden_layers=2, num_attention_heads=4,
        intermediate_size=64, max_position_embeddings=128, num_labels=2,
    )  # fmt: skip
    BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
    copy_tokenizer_files(packaged_minilm_path(), folder)
    return folder


def measure(model: str, steps: int, timeout: float, scratch: Path) -> tuple[Probe, dict]:
    """Run the job in the real main window; return what the probes saw."""
    os.environ["SLIMPAJAMA_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_CACHE", str(scratch / "hf-cache"))
    if not (os.environ.get("DISPLAY") or os.environ.get("WAYLAND_DISPLAY")):
        os.environ.setdefault("QT_QPA_PLATFORM", "offscreen")

    from PySide6.QtCore import QEventLoop, QSettings, Qt, QTimer
    from PySide6.QtWidgets import QApplication

    from slimpajama_gui.qt import charts
    from slimpajama_gui.qt.app import configure_identity

    configure_identity()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings")
    )
    app = QApplication.instance() or QApplication([sys.argv[0]])
    app.setStyle("Fusion")

    probe = Probe()
    live: set[int] = set()
    loss_chart: list[object] = []
    original_flush = charts.LiveCurves.flush

    def counting_flush(self) -> None:
        # The chart's timer is connected to the bound method at construction, so the
        # class attribute has to be replaced before the window is built.
        dirty = sum(1 for s in self._series.values() if s.dirty)
        original_flush(self)
        if id(self) not in live or probe.started is None or probe.finished is not None:
            return
        now = time.perf_counter()
        if dirty:
            probe.redraws.append(now)
            probe.set_data += dirty
            if loss_chart and self is loss_chart[0]:
                probe.loss_redraws.append(now)
                probe.draw_delays += [now - t for t in probe.pending]
                probe.pending.clear()
        else:
            probe.empty_flushes += 1

    charts.LiveCurves.flush = counting_flush
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.qt.main_window import MainWindow

    timer = QTimer()
    timer.setTimerType(Qt.TimerType.PreciseTimer)
    timer.setInterval(PROBE_MS)
    timer.timeout.connect(probe.tick)
    timer.start()

    window = MainWindow()
    window.resize(1280, 800)
    window.show_area("jobs")
    window.show()
    probe.shown = time.perf_counter()

    # A person opens the wizard after the window appears; the job starts once the
    # app's start-up imports (core.warmup) are done, and those are measured apart.
    def on_warm(seconds: float) -> None:
        probe.warm, probe.warm_seconds = time.perf_counter(), seconds

    warm_loop = QEventLoop()
    window.warmed_up.connect(on_warm)
    window.warmed_up.connect(warm_loop.quit)
    QTimer.singleShot(int(timeout * 1000), warm_loop.quit)
    if not window.warm:
        warm_loop.exec()
    jobs = window.jobs_view
    live.update(id(c) for c in jobs.live_charts.charts.values() if isinstance(c, charts.LiveCurves))
    loss_chart.append(jobs.live_charts.loss)

    def on_log(_index: int, metrics: dict) -> None:
        if "lr" in metrics or "grad_norm" in metrics:
            now = time.perf_counter()
            probe.logs.append(now)
            probe.pending.append(now)

    outcome: dict = {}

    def on_started(_job_id: int) -> None:
        probe.started = time.perf_counter()

    def on_finished(job_id: int, status: str, error: str) -> None:
        probe.finished = time.perf_counter()
        outcome.update(job_id=job_id, status=status, error=error)

    bridge = jobs.runner.bridge
    bridge.job_started.connect(on_started)
    bridge.logged.connect(on_log)
    jobs.runner.job_finished.connect(on_finished)

    recipe = recipe_from_yaml(
        RECIPE.format(model=model, steps=steps, eval_every=max(steps // 3, 1)), "the benchmark"
    )
    # The app's own event loop (not a polling loop), so the gaps are what a user gets.
    loop = QEventLoop()
    jobs.runner.job_finished.connect(loop.quit)
    QTimer.singleShot(int(timeout * 1000), loop.quit)
    jobs.submit(recipe)
    loop.exec()
    if outcome.get("status") == "done":
        bridge.job_started.disconnect(on_started)
        bridge.logged.disconnect(on_log)
        jobs.runner.job_finished.disconnect(on_finished)
        cancel_phase(jobs, model, steps, timeout, probe)
        result = Path(jobs.store.variants(outcome["job_id"])[0].path)
        playground_phase(window, Path(model_folder(model)), result, timeout, probe)
    timer.stop()
    if not outcome:
        jobs.runner.cancel()
        outcome.update(job_id=None, status="timeout", error=f"still running after {timeout} s")
        _wait_idle(app, jobs)
    window.close()
    charts.LiveCurves.flush = original_flush
    return probe, outcome


def _wait_idle(app, jobs) -> None:
    end = time.monotonic() + 60
    while jobs.runner.is_running and time.monotonic() < end:
        app.processEvents()
        time.sleep(0.01)


def model_folder(model: str) -> str:
    if model != "packaged":
        return model
    from slimpajama_gui.core.model.catalog import packaged_minilm_path

    return str(packaged_minilm_path())


def _run_loop(signal, timeout: float) -> None:
    """The app's event loop until ``signal`` fires (or ``timeout`` seconds pass)."""
    from PySide6.QtCore import QEventLoop, QTimer

    loop = QEventLoop()
    signal.connect(loop.quit)
    QTimer.singleShot(int(timeout * 1000), loop.quit)
    loop.exec()
    signal.disconnect(loop.quit)


def cancel_phase(jobs, model: str, steps: int, timeout: float, probe: Probe) -> None:
    """Click Cancel at the first training log of an unlimited job; time until it ends."""
    from slimpajama_gui.core.plan.recipe import recipe_from_yaml

    marks: dict[str, float] = {}

    def on_log(_index: int, _metrics: dict) -> None:
        if "clicked" not in marks:
            marks["clicked"] = time.perf_counter()
            if jobs.cancel_button.isEnabled():
                jobs.cancel_button.click()
            else:  # the running job is not the selected row
                jobs.runner.cancel()

    def on_finished(_job_id: int, status: str, _error: str) -> None:
        marks["ended"] = time.perf_counter()
        probe.cancel_status = status

    text = RECIPE.format(model=model, steps=100 * steps, eval_every=100 * steps)
    recipe = recipe_from_yaml(text.replace("responsiveness", "responsiveness-cancel"), "cancel")
    jobs.runner.bridge.logged.connect(on_log)
    jobs.runner.job_finished.connect(on_finished)
    jobs.submit(recipe)
    _run_loop(jobs.runner.job_finished, timeout)
    jobs.runner.bridge.logged.disconnect(on_log)
    jobs.runner.job_finished.disconnect(on_finished)
    if "ended" in marks and "clicked" in marks:
        probe.cancel_seconds = marks["ended"] - marks["clicked"]
    else:
        probe.cancel_status = "timeout"
        jobs.runner.cancel()


def playground_phase(window, source: Path, result: Path, timeout: float, probe: Probe) -> None:
    """Both Playground models load (cold) and predict one sentence; ticks meanwhile."""
    from slimpajama_gui.core.model.inspection import inspect_model

    view = window.playground
    window.show_area("playground")
    view.set_models([inspect_model(source), inspect_model(result, "result")])
    if view.busy():
        _run_loop(view.defaults_chosen, timeout)
    view.set_pair(source, result)
    text = "a warm, funny and moving film"
    shown: set[str] = set()

    def on_shown(side: str, pred) -> None:
        if pred.text == text:
            shown.add(side)
            if len(shown) == 2:
                done.append(time.perf_counter())

    done: list[float] = []
    view.prediction_shown.connect(on_shown)
    view.text.setText(text)
    probe.playground_active = True
    started = time.perf_counter()
    probe.playground_ticks.append(started)
    view.predict_now()
    end = started + timeout
    while not done and time.perf_counter() < end:
        _run_loop(view.prediction_shown, end - time.perf_counter())
    probe.playground_active = False
    view.prediction_shown.disconnect(on_shown)
    if done:
        probe.playground_seconds = done[0] - started


def figures(probe: Probe) -> dict[str, float | str]:
    gaps = probe.gaps_ms()
    window = (probe.logs[-1] - probe.logs[0]) if len(probe.logs) > 1 else float("nan")

    def during(times: list[float]) -> int:
        return sum(1 for t in times if probe.logs and probe.logs[0] <= t <= probe.logs[-1])

    training = [
        1000 * (b - a)
        for a, b in zip(probe.ticks, probe.ticks[1:], strict=False)
        if probe.logs and probe.logs[0] <= b <= probe.logs[-1]
    ]
    startup = [
        1000 * (b - a) for a, b in zip(probe.startup_ticks, probe.startup_ticks[1:], strict=False)
    ]
    ticks = probe.playground_ticks
    playground = [1000 * (b - a) for a, b in zip(ticks, ticks[1:], strict=False)]
    worst = max(range(len(gaps)), key=gaps.__getitem__, default=None)
    worst_at = probe.ticks[worst + 1] if worst is not None else float("nan")
    if not probe.logs or worst is None:
        phase = "unknown"
    elif worst_at < probe.logs[0]:
        phase = "before training (loading the model and data)"
    elif worst_at <= probe.logs[-1]:
        phase = "while training"
    else:
        phase = "after training (evaluating and saving)"
    return {
        "warm_up_seconds": probe.warm_seconds,
        "startup_gap_max_ms": max(startup, default=float("nan")),
        "startup_gaps_over_50ms": sum(g > STALL_MS for g in startup),
        "job_seconds": (probe.finished or 0) - (probe.started or 0),
        "gap_max_at_s": worst_at - (probe.started or 0),
        "gap_max_phase": phase,
        "ticks": len(probe.ticks),
        "gap_max_ms": max(gaps, default=float("nan")),
        "gap_max_training_ms": max(training, default=float("nan")),
        "gap_p99_ms": _percentile(gaps, 99),
        "gap_p50_ms": _percentile(gaps, 50),
        "gaps_over_50ms": sum(g > STALL_MS for g in gaps),
        "stalled_seconds": sum(g - PROBE_MS for g in gaps if g > STALL_MS) / 1000,
        "logs": len(probe.logs),
        "training_seconds": window,
        "logs_per_s": (len(probe.logs) - 1) / window if window > 0 else float("nan"),
        "redraws": len(probe.redraws),
        "redraws_per_s": during(probe.redraws) / window if window > 0 else float("nan"),
        "loss_redraws_per_s": during(probe.loss_redraws) / window if window > 0 else float("nan"),
        "set_data_calls": probe.set_data,
        "empty_flushes": probe.empty_flushes,
        "draw_delay_p50_ms": 1000 * _percentile(probe.draw_delays, 50),
        "draw_delay_max_ms": 1000 * max(probe.draw_delays, default=float("nan")),
        "cancel_status": probe.cancel_status,
        "cancel_seconds": probe.cancel_seconds,
        "playground_seconds": probe.playground_seconds,
        "playground_ticks": len(playground),
        "playground_gap_max_ms": max(playground, default=float("nan")),
        "playground_gaps_over_50ms": sum(g > STALL_MS for g in playground),
    }


def report(f: dict, model: str, steps: int, command: str, load: str) -> str:
    return "\n".join(
        [
            "## GUI responsiveness: a job training, Cancel, the Playground loading models",
            "",
            f"Command: `{command}`",
            "",
            f"Machine: {machine()}. Load average at the start: {load}.",
            "",
            f"The real main window (Qt offscreen platform), Jobs area shown, runs a fine-tune of "
            f"{'the packaged MiniLM' if model == 'packaged' else model} on the built-in demo data "
            f"({steps} steps, batch 16, max length 64, a training log every step) submitted "
            "through the Jobs area once the app's start-up imports are done (as when a person "
            "opens the wizard). A 10 ms timer on the GUI thread measures how long the event "
            "loop could not run; the live charts' flushes are counted. Then Cancel is "
            "clicked at the first training log of the same job with 100 times the steps, and "
            "the Playground loads its two models (the job's source and its result) cold.",
            "",
            "| What | Figure |",
            "|---|---|",
            f"| Start-up imports on a worker (once per app start, `core/jobs/warmup.py`) | "
            f"{f['warm_up_seconds']:.1f} s; largest event-loop gap meanwhile "
            f"{f['startup_gap_max_ms']:.0f} ms, {f['startup_gaps_over_50ms']} gaps over "
            f"{STALL_MS} ms |",
            f"| Job (load, train, evaluate, save) | {f['job_seconds']:.1f} s, "
            f"{f['ticks']} probe ticks |",
            f"| Event-loop gap, largest | **{f['gap_max_ms']:.0f} ms** over the whole job, "
            f"{f['gap_max_at_s']:.1f} s after it started, {f['gap_max_phase']}; "
            f"{f['gap_max_training_ms']:.0f} ms while training logs arrive |",
            f"| Event-loop gap, p99 / p50 | {f['gap_p99_ms']:.1f} ms / {f['gap_p50_ms']:.1f} ms "
            f"(timer interval {PROBE_MS} ms) |",
            f"| Gaps over {STALL_MS} ms | {f['gaps_over_50ms']} "
            f"(together {f['stalled_seconds']:.2f} s of the job) |",
            f"| Training logs reaching the GUI | {f['logs']} in {f['training_seconds']:.1f} s "
            f"({f['logs_per_s']:.1f}/s) |",
            f"| Chart redraws with new points | {f['redraws']} in all, {f['set_data_calls']} "
            f"setData calls; while logs arrive {f['redraws_per_s']:.1f}/s over all live charts, "
            f"{f['loss_redraws_per_s']:.1f}/s of the loss chart |",
            f"| Log → loss curve drawn | p50 {f['draw_delay_p50_ms']:.0f} ms, max "
            f"{f['draw_delay_max_ms']:.0f} ms (the refresh timer is 80 ms) |",
            f"| Chart refresh rate | every new point on screen within "
            f"{f['draw_delay_max_ms']:.0f} ms, i.e. the charts keep up with "
            f"{1000 / f['draw_delay_max_ms']:.0f} refreshes a second; they redraw only when "
            f"data arrives ({f['logs_per_s']:.1f} training logs a second here) |",
            f"| Cancel clicked at the first training log → the job's end on screen | "
            f"{f['cancel_seconds']:.2f} s, {f['cancel_status']} (target under "
            f"{CANCEL_TARGET_S:g} s: {_verdict(f['cancel_seconds'] < CANCEL_TARGET_S)}) |",
            f"| Playground: both models load (cold) and predict one sentence | "
            f"{f['playground_seconds']:.1f} s; largest event-loop gap "
            f"{f['playground_gap_max_ms']:.0f} ms, {f['playground_gaps_over_50ms']} gaps over "
            f"{STALL_MS} ms (target no gap over {PLAYGROUND_GAP_TARGET_MS} ms: "
            f"{_verdict(f['playground_gap_max_ms'] <= PLAYGROUND_GAP_TARGET_MS)}) |",
        ]
    )


def _verdict(ok: bool) -> str:
    return "met" if ok else "**missed**"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="a tiny model and 12 steps")
    parser.add_argument("--model", help="model folder (default: the packaged MiniLM)")
    parser.add_argument("--steps", type=int, help="training steps (default 60; 12 with --quick)")
    parser.add_argument("--timeout", type=float, default=1200, help="seconds before giving up")
    parser.add_argument("--note", help="a sentence about the run to keep with the figures")
    args = parser.parse_args(argv)
    steps = args.steps or (12 if args.quick else 60)
    scratch = Path(tempfile.mkdtemp(prefix="slimpajama-gui-bench-"))
    load = ", ".join(f"{v:.2f}" for v in os.getloadavg())
    try:
        model = args.model or (str(tiny_model(scratch / "tiny")) if args.quick else "packaged")
        probe, outcome = measure(model, steps, args.timeout, scratch)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    if outcome.get("status") != "done":
        print(f"the job {outcome.get('status')}: {outcome.get('error')}", file=sys.stderr)
        return 1
    if probe.cancel_status != "cancelled" or probe.playground_seconds != probe.playground_seconds:
        print(
            f"cancel: {probe.cancel_status}; playground predictions shown: "
            f"{probe.playground_seconds == probe.playground_seconds}",
            file=sys.stderr,
        )
        return 1
    f = figures(probe)
    for key, value in f.items():
        print(f"{key}: {value:.2f}" if isinstance(value, float) else f"{key}: {value}")
    command = "python benchmarks/gui_responsiveness.py" + (
        f" --steps {args.steps}" if args.steps else ""
    )
    body = report(f, "packaged" if model == "packaged" else Path(model).name, steps, command, load)
    if args.note:
        body += "\n\n" + args.note
    print()
    print(body)
    if not args.quick:
        write_section("gui-responsiveness", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
