"""Write a PNG of each main area to a folder: ``python -m slimpajama_gui.qt.screenshots DIR``.

`make screenshots` runs this under Xvfb (a real X server, the xcb platform), so the
pictures are what a person sees. Settings and data go to a throw-away folder, so the
user's own window layout and history neither leak into the pictures nor get changed.

Every area shows real content: before taking the pictures, the script runs the Balanced
preset (``resources/recipes/preset-balanced.yaml``: fine-tune, distil into a 4-layer
student on the rows and augmented copies, int8 in onnxruntime, evaluate, benchmark) on the packaged
MiniLM and the built-in demo data through the app's own Jobs area, then measures the
source model and the fine-tuned teacher with Compare's Benchmark action (the baseline),
computes the flips between the teacher and the int8 student, and has the Playground
predict one typed sentence with both. ``compare-menu`` is Compare's right-click menu on a
result. ``sensitivity`` is the Jobs area on a second job: a sensitivity step
(``type: sensitivity``, every layer, head, FFN block and linear, on the demo's eval rows)
on that fine-tuned teacher, its heat map and bars on the job's Sensitivity tab. At the
preset's own settings this takes several minutes on 2 CPU cores; ``--max-steps`` caps
every training loop for a quick look at the layouts.

Options (each also read from the environment, as ``make screenshots`` passes them):

- ``--size WxH`` (``SHOT_SIZE``, default 1280x800): the window size.
- ``--suffix TEXT`` (``SHOT_SUFFIX``): added to each file name (``models-1080.png``).
- ``--model PATH``: another source model for the job.
- ``--max-steps N``: cap every training loop at N optimizer steps (0, the default: the
  preset's own settings); the job's log says that the cap was applied.
- ``--only sensitivity`` (``SHOT_ONLY``): only ``sensitivity.png``, from one job that
  fine-tunes the source model as the preset does and then runs the sensitivity step;
  with ``--teacher PATH`` (a model already fine-tuned for the demo labels, e.g. a
  ``01-finetune`` result) the job runs the sensitivity step on it alone.
- ``--sensitivity-rows N``: eval rows the sensitivity step samples (default 256; the
  demo's eval split has 100).

Example:
    SHOT_SIZE=1920x1080 SHOT_SUFFIX=-1080 make screenshots
"""

from __future__ import annotations

import argparse
import contextlib
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

#: The sentence typed into the Playground.
SENTENCE = "A warm, funny and beautifully acted film."

#: The preset the pictures show, as a user runs it from the wizard.
PRESET = "balanced"


class Timeout(RuntimeError):
    pass


def _size(text: str) -> tuple[int, int]:
    try:
        width, height = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected WIDTHxHEIGHT, got {text!r}") from None
    if width < 640 or height < 400:
        raise argparse.ArgumentTypeError(f"{text} is too small; at least 640x400")
    return width, height


def parse_args(argv: list[str]) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m slimpajama_gui.qt.screenshots",
        description="Run a real demo job in the app and save a PNG of every area.",
    )
    parser.add_argument("out", nargs="?", default="docs/screenshots", help="output folder")
    parser.add_argument(
        "--size",
        type=_size,
        default=_size(os.environ.get("SHOT_SIZE") or "1280x800"),
        help="window size WxH (env SHOT_SIZE; default 1280x800)",
    )
    parser.add_argument(
        "--suffix",
        default=os.environ.get("SHOT_SUFFIX", ""),
        help="added to each file name, e.g. -1080 (env SHOT_SUFFIX)",
    )
    parser.add_argument(
        "--model", default="packaged", help="the job's model (default: the packaged MiniLM)"
    )
    parser.add_argument(
        "--max-steps",
        type=int,
        default=0,
        help="cap every training loop at N steps (0: the preset's own settings)",
    )
    parser.add_argument(
        "--timeout", type=float, default=3600, help="seconds the job may take before giving up"
    )
    parser.add_argument(
        "--only",
        choices=["sensitivity"],
        default=os.environ.get("SHOT_ONLY") or None,
        help="only this picture (env SHOT_ONLY): sensitivity",
    )
    parser.add_argument(
        "--teacher", default=None, help="with --only sensitivity: an already fine-tuned model"
    )
    parser.add_argument(
        "--sensitivity-rows", type=int, default=256, help="rows the sensitivity step samples"
    )
    return parser.parse_args(argv[1:])


def main(argv: list[str]) -> int:
    args = parse_args(argv)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix="slimpajama-shots-"))
    os.environ["SLIMPAJAMA_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_CACHE", str(scratch / "hf-cache"))
    if args.max_steps > 0:
        os.environ["SLIMPAJAMA_MAX_TRAIN_STEPS"] = str(args.max_steps)
    t0 = time.monotonic()

    def say(text: str) -> None:
        print(f"[{time.monotonic() - t0:6.1f} s] {text}", flush=True)

    from PySide6.QtCore import QSettings
    from PySide6.QtWidgets import QApplication

    from slimpajama_gui.qt.app import app_icon, collect_garbage_on_gui_thread, configure_identity

    configure_identity()
    QSettings.setDefaultFormat(QSettings.Format.IniFormat)
    QSettings.setPath(
        QSettings.Format.IniFormat, QSettings.Scope.UserScope, str(scratch / "settings")
    )
    app = QApplication(argv[:1])
    app.setStyle("Fusion")
    app.setWindowIcon(app_icon())
    collect_garbage_on_gui_thread(app)

    from slimpajama_gui.core.plan.recipe import recipe_from_yaml
    from slimpajama_gui.qt.main_window import AREAS, MainWindow

    def wait(predicate, timeout: float, what: str) -> None:
        deadline = time.monotonic() + timeout
        while not predicate():
            if time.monotonic() > deadline:
                raise Timeout(f"{what} did not happen within {timeout:.0f} s")
            app.processEvents()
            time.sleep(0.02)

    def settle(seconds: float) -> None:
        end = time.monotonic() + seconds
        while time.monotonic() < end:
            app.processEvents()
            time.sleep(0.02)

    window = MainWindow()
    window.resize(*args.size)
    window.show()
    counts = {"scans": 0, "loaded": 0, "defaults": 0}
    finished: list[tuple[int, str, str]] = []

    def bump(key: str):
        return lambda *_: counts.__setitem__(key, counts[key] + 1)

    window.models_view.scan_finished.connect(bump("scans"))
    window.compare_view.loaded.connect(bump("loaded"))
    window.playground.defaults_chosen.connect(bump("defaults"))
    runner = window.jobs_view.runner
    runner.job_finished.connect(lambda *a: finished.append(a))
    runner.bridge.step_started.connect(lambda i, kind, n: say(f"job step {i + 1}/{n}: {kind}"))
    try:
        wait(lambda: counts["scans"] > 0, 60, "the first model scan")
        if args.only == "sensitivity":
            teacher = args.teacher
            return _sensitivity_shot(window, args, teacher, finished, out, wait, settle, say)
        say(f"window {window.width()}x{window.height()}; running the {PRESET} preset")

        # ------------------------------------------------------------------ the job
        from importlib import resources

        preset = resources.files("slimpajama_gui.resources") / "recipes" / f"preset-{PRESET}.yaml"
        text = preset.read_text(encoding="utf-8").replace("model: packaged", f"model: {args.model}")
        recipe = recipe_from_yaml(text, preset.name)
        window.show_area("jobs")
        scans, loaded, defaults = counts["scans"], counts["loaded"], counts["defaults"]
        window.jobs_view.submit(recipe)
        wait(lambda: bool(finished), args.timeout, "the demo job")
        job_id, status, error = finished[0]
        say(f"job #{job_id} {status}" + (f": {error}" if error else ""))
        if status != "done":
            print(f"screenshots: the demo job {status}: {error}", file=sys.stderr)
            return 1

        # ------------------------------------------------------------------ the areas
        # The main window rescans the models and refreshes Compare when a job ends.
        wait(lambda: counts["scans"] > scans, 60, "the model rescan")
        wait(lambda: counts["loaded"] > loaded, 60, "Compare reading the history")
        wait(lambda: counts["defaults"] > defaults, 60, "the Playground's default pair")
        variants = {v.step_type: v for v in window.compare_view.variants if not v.is_source}
        tuned, int8 = variants.get("finetune"), variants.get("quantize")
        if tuned is None or int8 is None:
            print(f"screenshots: variants missing: {sorted(variants)}", file=sys.stderr)
            return 1

        compare = window.compare_view
        # The baseline (the source model) and the teacher, measured with Compare's own
        # Benchmark action as a user would: one click each, on a worker.
        for key in (None, tuned.key):
            benched: list[str] = []
            compare.benchmark_done.connect(benched.append)
            if key is None:
                compare.baseline_button.click()
            else:
                compare.benchmark(next(i for i, v in enumerate(compare.variants) if v.key == key))
            wait(lambda b=benched: bool(b), 300, "Compare's Benchmark action")
            compare.benchmark_done.disconnect(benched.append)
            wait(lambda: not compare._benchmarking, 60, "Compare's refresh")
            say(f"Compare: {benched[0]}")
        variants = {v.step_type: v for v in compare.variants if not v.is_source}
        tuned, int8 = variants["finetune"], variants["quantize"]
        flips: list[object] = []
        compare.flips_ready.connect(flips.append)
        compare.flips_failed.connect(flips.append)
        compare.set_pair(compare.variants.index(tuned), compare.variants.index(int8))
        compare.select_row(compare.variants.index(int8))
        wait(lambda: bool(flips), 120, "Compare's flip list")
        say("Compare: flips computed")

        playground = window.playground
        playground.set_pair(tuned.path, int8.path)
        if playground.path("a") is None or playground.path("b") is None:
            listed = [str(i.path) for i in playground.models()]
            print(f"screenshots: the Playground does not list {tuned.path}: {listed}")
            return 1
        playground.text.setText(SENTENCE)
        playground.predict_now()

        def both_predicted() -> bool:
            return all(
                (p.result is not None and p.result.text == SENTENCE) or p.error
                for p in playground.panels.values()
            )

        wait(both_predicted, 120, "the Playground's predictions")
        say("Playground: both models predicted")

        view = window.models_view
        view.select_path(next(i.path for i in view.model.infos() if i.source == "packaged"))
        for area in AREAS:
            window.show_area(area.key)
            window.statusBar().clearMessage()  # a stale "Loading…" would mislead
            dialog = _open_wizard(window, wait, settle) if area.key == "compress" else None
            settle(0.5)  # let layouts and the plots settle
            path = out / f"{area.key}{args.suffix}.png"
            shot = _grab(window, dialog)
            shot.save(str(path))
            say(f"wrote {path} ({shot.width()}x{shot.height()})")
            if dialog is not None:
                dialog.reject()
            if area.key == "compare":
                path = out / f"compare-menu{args.suffix}.png"
                shot = _grab_menu(window, compare, compare.variants.index(int8), settle)
                shot.save(str(path))
                say(f"wrote {path} ({shot.width()}x{shot.height()})")
        return _sensitivity_shot(window, args, tuned.path, finished, out, wait, settle, say)
    except Timeout as exc:
        print(f"screenshots: {exc}", file=sys.stderr)
        return 1
    finally:
        if runner.is_running:  # closing would ask whether to stop it
            runner.cancel()
            with contextlib.suppress(Timeout):
                wait(lambda: not runner.is_running, 60, "cancelling the job")
        window.close()
        # As the app does at exit (app.end_session): a refresh still running on a pool
        # thread while Python tears Qt down prints "Signal source has been deleted".
        from PySide6.QtCore import QThreadPool

        from slimpajama_gui.qt.app import POOL_WAIT_MS

        if not QThreadPool.globalInstance().waitForDone(POOL_WAIT_MS):
            print("screenshots: a worker was still running at exit", file=sys.stderr)
        shutil.rmtree(scratch, ignore_errors=True)
    return 0


def _sensitivity_shot(window, args, teacher, finished: list, out: Path, wait, settle, say) -> int:
    """Run a sensitivity step on ``teacher`` (None: fine-tune ``args.model`` first, as the
    preset does) in the Jobs area, and save that job's Sensitivity tab as sensitivity.png."""
    from importlib import resources

    from slimpajama_gui.core.plan.recipe import recipe_from_yaml

    preset = resources.files("slimpajama_gui.resources") / "recipes" / f"preset-{PRESET}.yaml"
    lines = preset.read_text(encoding="utf-8").splitlines()
    finetune = next(line for line in lines if "type: finetune" in line)
    sensitivity = f"  - {{type: sensitivity, rows: {args.sensitivity_rows}}}"
    steps = ([finetune] if teacher is None else []) + [sensitivity]
    text = "\n".join([
        "name: sensitivity",
        f"model: {teacher or args.model}",
        "dataset: {train: demo, labels: [negative, positive], max_length: 64}",
        'output: "{data}/results/sensitivity"',
        "steps:",
        *steps,
    ])  # fmt: skip
    done_before = len(finished)
    window.show_area("jobs")
    say(f"running a sensitivity step on {teacher or args.model}")
    window.jobs_view.submit(recipe_from_yaml(text, "sensitivity.yaml"))
    wait(lambda: len(finished) > done_before, args.timeout, "the sensitivity job")
    job_id, status, error = finished[-1]
    say(f"job #{job_id} {status}" + (f": {error}" if error else ""))
    if status != "done":
        print(f"screenshots: the sensitivity job {status}: {error}", file=sys.stderr)
        return 1
    jobs = window.jobs_view
    jobs.select_job(job_id)
    # The heat map needs height: give the charts most of it, as a user drags the divider.
    jobs.splitter.setSizes([150, max(400, window.height() - 150)])
    charts = jobs.current_charts()
    charts.show_sensitivity(True, select=True)
    charts.sensitivity.flush()
    window.statusBar().clearMessage()
    settle(0.8)
    path = out / f"sensitivity{args.suffix}.png"
    shot = _grab(window)
    shot.save(str(path))
    say(f"wrote {path} ({shot.width()}x{shot.height()})")
    return 0


def _open_wizard(window, wait, settle):
    """The Compress area's wizard on its techniques page (None if the area has no wizard)."""
    page = window.pages["compress"]
    if not hasattr(page, "open_wizard"):
        return None
    wizard = page.open_wizard()
    from PySide6.QtWidgets import QWizard

    for _ in range(2):  # model → data → techniques
        next_button = wizard.button(QWizard.WizardButton.NextButton)
        try:
            wait(next_button.isEnabled, 30, "the wizard's Next button")
        except Timeout as exc:
            print(f"screenshots: {exc}; showing the page it is on", file=sys.stderr)
            break
        wizard.next()
        settle(0.3)
    # Centred over the window, as a window manager would place it.
    wizard.move(window.geometry().center() - wizard.rect().center())
    settle(0.2)
    return wizard


def _grab_menu(window, compare, row: int, settle):
    """The window with Compare's right-click menu open on ``row``, as the screen shows it.

    A menu is a window of its own, so the picture is cut from the whole screen.
    """
    table = compare.table
    rect = table.visualRect(compare.proxy.mapFromSource(compare.model.index(row, 0)))
    pos = table.viewport().mapToGlobal(rect.center())
    menu = compare.context_menu(row)
    menu.popup(pos)
    settle(0.5)
    screen = window.screen()
    shot = None
    if screen is not None:
        frame = window.frameGeometry()
        shot = screen.grabWindow(0, frame.x(), frame.y(), frame.width(), frame.height())
    if shot is None or shot.isNull():
        shot = window.grab()
    menu.close()
    settle(0.2)
    return shot


def _grab(window, dialog=None):
    """What the X server shows, or the widget rendered when it does not fit the screen.

    A dialog open over the window is painted in where it sits, since a widget grab of
    the main window leaves other top-level windows out.
    """
    from PySide6.QtGui import QColor, QPainter

    screen = window.screen()
    shot = None
    if screen is not None and screen.geometry().contains(window.frameGeometry()):
        shot = screen.grabWindow(window.winId())
    if shot is None or shot.isNull():
        shot = window.grab()
    if dialog is not None and dialog.isVisible():
        # Xvfb has no window manager: no title bar and no shadow, so the picture dims the
        # window behind and draws a thin frame to show the dialog is on top.
        top_left = dialog.geometry().topLeft() - window.geometry().topLeft()
        picture = dialog.grab()
        painter = QPainter(shot)
        painter.fillRect(shot.rect(), QColor(0, 0, 0, 70))
        painter.drawPixmap(top_left, picture)
        painter.setPen(QColor("#5a5a5a"))
        painter.drawRect(
            top_left.x() - 1, top_left.y() - 1, picture.width() + 1, picture.height() + 1
        )
        painter.end()
    return shot


if __name__ == "__main__":
    sys.exit(main(sys.argv))
