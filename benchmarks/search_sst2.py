"""The budgeted search on SST-2, cancelled part-way: it must still return its best.

    .venv/bin/python benchmarks/search_sst2.py --teacher RESULT_FOLDER            # ~10 min
    .venv/bin/python benchmarks/search_sst2.py --teacher TINY_MODEL --quick --doc COPY

From a fine-tuned teacher folder (``benchmarks/finetune_sst2.py``), one job runs a
``search`` step (the one ``slimpajama search`` and the wizard's "Find the best…" run)
with a 1.0-point dev budget, a 30-minute wall-clock budget and the latency objective, on
SST-2 (train rows capped by ``--train-rows``), and this script presses Cancel at
``--cancel-after`` (minute 10), as a user would. The report is what the search left on
disk: every trial (chain, dev accuracy, points lost, batch-1 latency, size), the Pareto
set and the best-so-far it returned, reloaded from its state file; then the best model
and the teacher are measured on the test split and timed by the same benchmark step
(2 threads, batch 1, one after the other: not interleaved), for the ratios.

``--quick`` caps training (``SLIMPAJAMA_MAX_TRAIN_STEPS``), shortens both budgets and
times fewer sentences: it checks that the script runs; its figures are not the search's.
It writes no section unless ``--doc`` names a file (the test passes a copy). Without
``--quick`` it writes the "search-sst2" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
import tempfile
import threading
import time
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report  # noqa: E402
from _report import machine  # noqa: E402

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"
QUICK_TRAIN_STEPS = 2


def dataset(data: Path, train_rows: int | None) -> dict[str, Any]:
    spec: dict[str, Any] = {
        "train": str(data / "train.tsv"), "eval": str(data / "dev.tsv"),
        "test": str(data / "test.tsv"), "labels": ["negative", "positive"], "max_length": 128,
    }  # fmt: skip
    if train_rows:
        spec["max_rows"] = train_rows
    return spec


def run_search(args, work: Path, store) -> tuple[Any, dict[str, Any], float]:
    """The search job, cancelled after ``args.cancel_after`` s; (result, state, seconds)."""
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.jobs.search import load_state, search_folder
    from slimpajama_gui.core.plan.recipe import Recipe
    from slimpajama_gui.core.plan.steps import step_from_dict
    from slimpajama_gui.core.techniques.hooks import Control

    search = {"type": "search", "budget_points": args.budget_points,
              "time_budget_s": args.time_budget, "objective": "latency", "seed": args.seed,
              "bench_sentences": args.bench_sentences, "threads": 2, "epochs": args.epochs}  # fmt: skip
    recipe = Recipe(
        name="search-sst2", model=str(args.teacher), dataset=dataset(args.data, args.train_rows),
        output=str(work / "search"), steps=[step_from_dict(search, index=0)], threads=2,
    )  # fmt: skip
    control = Control()
    timer = threading.Timer(args.cancel_after, control.request_stop)  # the user's Cancel
    timer.daemon = True
    started = time.monotonic()
    timer.start()
    try:
        result = run(recipe, control=control, store=store)
    finally:
        timer.cancel()
    seconds = time.monotonic() - started
    return result, load_state(search_folder(work / "search", 0)), seconds


def measure(model: str, args, work: Path, name: str, store) -> dict[str, Any]:
    """Test accuracy and batch-1 latency of ``model`` through the app's own steps."""
    from slimpajama_gui.core.jobs.pipeline import run
    from slimpajama_gui.core.plan.recipe import Recipe
    from slimpajama_gui.core.plan.steps import step_from_dict

    steps = [{"type": "evaluate", "split": "test"},
             {"type": "benchmark", "threads": 2, "sentences": args.sentences}]  # fmt: skip
    recipe = Recipe(
        name=f"search-sst2 measure {name}", model=model, dataset=dataset(args.data, 64),
        output=str(work / f"measure-{name}"),
        steps=[step_from_dict(s, index=i) for i, s in enumerate(steps)], threads=2,
    )  # fmt: skip
    result = run(recipe, store=store)
    if result.status != "done":
        raise SystemExit(f"measuring {name} failed: {result.error}")
    row: dict[str, Any] = {}
    for part in result.summary:
        row.update({k: v for k, v in part.items() if k != "step"})
    return row


def report(args, result, state: dict[str, Any], seconds: float, best: dict, teacher: dict) -> str:
    lines = ["## Budgeted search on SST-2, cancelled at minute 10 (issue 13)\n"]
    mode = (
        f"--quick run: training capped at {QUICK_TRAIN_STEPS} steps, budgets shortened; "
        "its figures are not the search's.\n\n"
        if args.quick
        else ""
    )
    rows_text = f"{args.train_rows:,} train rows" if args.train_rows else "the full train set"
    lines.append(
        f"{mode}Command: `python benchmarks/search_sst2.py --teacher {args.teacher.name} "
        f"--train-rows {args.train_rows} --cancel-after {args.cancel_after:g}`. Search: "
        f"{args.budget_points:g}-point dev budget, {args.time_budget / 60:g}-minute wall-clock "
        f"budget, objective batch-1 latency (2 threads, {args.bench_sentences} dev sentences "
        f"per trial), seed {args.seed}, {rows_text}, {args.epochs:g} epoch per trained step; "
        f"Cancel pressed at {args.cancel_after / 60:g} min. The job ended "
        f"**{result.status}** after {seconds / 60:.1f} min; the search's state says "
        f"**{state['status']}**.\n"
    )
    load = ", ".join(f"{x:.1f}" for x in args.load)
    lines.append(f"Machine: {machine()}; load average (1, 5, 15 min) at the start: {load}.\n")
    base = state["baseline"]
    if base.get("accuracy") is not None and base.get("latency_ms") is not None:
        lines.append(
            f"Starting model (the teacher): dev accuracy {100 * base['accuracy']:.2f} %, "
            f"{base['latency_ms']:.2f} ms at batch 1 (search's own timing).\n"
        )
    else:
        lines.append("Starting model (the teacher): not measured before the Cancel.\n")
    lines.append("| Trial | State | Chain | Dev acc. | Points | p50 batch 1 | Size | |")
    lines.append("|---|---|---|---|---|---|---|---|")
    pareto, best_n = set(state["pareto"]), state["best"]["trial"]
    for t in state["trials"]:
        mark = "**best**" if t["number"] == best_n else ("Pareto" if t["number"] in pareto else "")
        acc = "–" if t["accuracy"] is None else f"{100 * t['accuracy']:.2f} %"
        pts = "–" if t["loss_points"] is None else f"{-t['loss_points']:+.2f}"
        ms = "–" if t["latency_ms"] is None else f"{t['latency_ms']:.2f} ms"
        mb = "–" if t["size_bytes"] is None else f"{t['size_bytes'] / 1e6:.1f} MB"
        note = f" ({t['note']})" if t["note"] else ""
        lines.append(f"| {t['number']} | {t['state']}{note} | {t['chain']} | {acc} | {pts} | "
                     f"{ms} | {mb} | {mark} |")  # fmt: skip
    lines.append("")
    lines.append(f"Pareto set (dev accuracy vs latency): trials {sorted(pareto) or 'none'}.\n")
    lines.append(f"Returned: {state['sentence']}\n")
    t_acc, b_acc = teacher.get("accuracy"), best.get("accuracy")
    size_ratio = teacher["size_bytes"] / best["size_bytes"] if best.get("size_bytes") else None
    speed = (
        teacher["latency_p50_ms"] / best["latency_p50_ms"] if best.get("latency_p50_ms") else None
    )
    lines.append("| Model | Test accuracy | Size | p50 batch 1 (2 threads) |")
    lines.append("|---|---|---|---|")
    for name, row in (("teacher (PyTorch fp32)", teacher), ("search's best-so-far", best)):
        lines.append(f"| {name} | {100 * row['accuracy']:.2f} % | {row['size_bytes'] / 1e6:.1f} MB "
                     f"| {row['latency_p50_ms']:.2f} ms |")  # fmt: skip
    lines.append("")
    if t_acc is not None and b_acc is not None and size_ratio and speed:
        lines.append(
            f"The best-so-far against the teacher: {100 * (b_acc - t_acc):+.2f} test points, "
            f"{size_ratio:.1f}x smaller, {speed:.1f}x faster at batch 1 (benchmark step, the two "
            "models timed one after the other, not interleaved)."
        )
    return "\n".join(lines)


def screenshot(history: Path, job_id: int, path: Path) -> None:
    """The search's Pareto chart as the Jobs area draws it, replayed from the run's history
    (the figures the bridge delivered live), saved as a PNG."""
    from PySide6.QtWidgets import QApplication

    from slimpajama_gui.core.storage.history import JobStore
    from slimpajama_gui.qt.charts.search_chart import SearchPareto, is_search_metrics
    from slimpajama_gui.qt.charts.series import group_records

    app = QApplication.instance() or QApplication([])
    chart = SearchPareto()
    chart.resize(1100, 560)
    with JobStore(history) as store:
        for _index, metrics in group_records(store.metrics(job_id)):
            if is_search_metrics(metrics):
                chart.add_trial(metrics)
    chart.show()
    for _ in range(5):
        app.processEvents()
    chart.flush()
    app.processEvents()
    path.parent.mkdir(parents=True, exist_ok=True)
    chart.export(path)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--teacher", type=Path, required=True, help="fine-tuned model folder")
    parser.add_argument("--data", type=Path, default=SST2, help="folder with SST-2 TSV files")
    parser.add_argument("--train-rows", type=int, default=8000)
    parser.add_argument("--budget-points", type=float, default=1.0)
    parser.add_argument("--time-budget", type=float, default=1800.0, help="seconds")
    parser.add_argument("--cancel-after", type=float, default=600.0, help="seconds")
    parser.add_argument("--epochs", type=float, default=1.0)
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--bench-sentences", type=int, default=50)
    parser.add_argument("--sentences", type=int, default=200, help="sentences of the final timing")
    parser.add_argument("--work", type=Path, default=None)
    parser.add_argument("--quick", action="store_true")
    parser.add_argument("--doc", type=Path, default=None, help="write the section here")
    parser.add_argument("--screenshot", type=Path, default=None,
                        help="save the search's Pareto chart (PNG) from this run's history")  # fmt: skip
    args = parser.parse_args(argv)
    if args.quick:
        os.environ["SLIMPAJAMA_MAX_TRAIN_STEPS"] = str(QUICK_TRAIN_STEPS)
        args.train_rows = min(args.train_rows or 200, 200)
        args.time_budget = min(args.time_budget, 240.0)
        args.cancel_after = min(args.cancel_after, 60.0)
        args.bench_sentences, args.sentences = 5, 20
    from slimpajama_gui.core.storage.history import JobStore

    # The machine may be shared: the load says how far its latencies are from a quiet one's.
    args.load = os.getloadavg() if hasattr(os, "getloadavg") else (math.nan,) * 3
    work = args.work or Path(tempfile.mkdtemp(prefix="search-sst2-"))
    with JobStore(work / "history.sqlite3") as store:
        result, state, seconds = run_search(args, work, store)
        best_path = state["best"]["path"]
        teacher = measure(str(args.teacher), args, work, "teacher", store)
        # No trial finished: the search returned the teacher itself, measured once.
        same = Path(best_path).resolve() == args.teacher.resolve()
        best = teacher if same else measure(best_path, args, work, "best", store)
    body = report(args, result, state, seconds, best, teacher)
    if args.screenshot is not None:
        screenshot(work / "history.sqlite3", result.job_id, args.screenshot)
        print(f"search_screenshot: {args.screenshot}")
    print(body)
    print(f"search_job_status: {result.status}")
    print(f"search_state: {state['status']}")
    print(f"search_trials: {len(state['trials'])}")
    print(f"search_best: {best_path}")
    if args.doc is not None:
        _report.DOC = args.doc
    if args.doc is not None or not args.quick:
        _report.write_section("search-sst2", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
