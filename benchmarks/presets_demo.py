"""The three wizard presets at their real settings, on the demo data the app ships.

    .venv/bin/python benchmarks/presets_demo.py          # packaged MiniLM; about 2 minutes on 2 idle cores
    .venv/bin/python benchmarks/presets_demo.py --quick  # training capped, seconds per step

Each preset's recipe (``resources/recipes/preset-NAME.yaml``: the chain the wizard shows
for the packaged MiniLM, which has no classifier head, so fine-tuning comes first) runs
through ``pipeline.run`` as ``slimpajama run`` would, on the built-in demo data (440
train rows, 100 dev rows), each in a fresh data folder. Per preset it reports whether the
job finished, its wall time and each step's, the fine-tuned teacher's dev accuracy and
the final one, the final variant's size (and the teacher's weights) and its p50 latency
at batch 1 from the preset's own benchmark step, and what the quantize step's accuracy
guard decided. A preset that fails is reported with its sentence, not an exit code.

``--quick`` caps every training loop at a few steps (``SLIMPAJAMA_MAX_TRAIN_STEPS``) and
times fewer sentences: it checks that the script runs, and its figures are not the
presets'. It writes no section unless ``--doc`` names a file (the test passes a copy).
Without ``--quick`` it writes the "presets-demo" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from dataclasses import replace
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent))

import _report  # noqa: E402
from _report import machine  # noqa: E402

PRESETS = ("fast", "balanced", "smallest")
QUICK_TRAIN_STEPS = 3


def _folder_bytes(folder: Path) -> int:
    return sum(f.stat().st_size for f in Path(folder).rglob("*") if f.is_file())


def run_preset(name: str, quick: bool, scratch: Path) -> dict[str, Any]:
    """Run one preset's recipe; its figures (``status`` "done" or the failure)."""
    from importlib.resources import files

    from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
    from slimpajama_gui.core.plan.presets import step_title
    from slimpajama_gui.core.plan.recipe import load_recipe
    from slimpajama_gui.core.storage.history import JobStore

    recipe = load_recipe(
        Path(str(files("slimpajama_gui.resources"))) / "recipes" / f"preset-{name}.yaml"
    )
    if quick:
        recipe = replace(
            recipe,
            steps=[
                replace(s, sentences=10, repeats=1, warmup=2) if s.step_type == "benchmark" else s
                for s in recipe.steps
            ],
        )
    recipe = replace(recipe, output=str(scratch / name / "out"))
    times: list[float] = []
    titles: list[str] = []
    messages: list[str] = []

    class Clock(PipelineCallbacks):
        def on_step_start(self, index, step, count):
            times.append(time.perf_counter())
            titles.append(step_title(step))

        def on_message(self, text):
            messages.append(text)

    t0 = time.perf_counter()
    with JobStore(scratch / name / "history.sqlite3") as store:
        result = run(recipe, Clock(), store=store)
    wall = time.perf_counter() - t0
    ends = [*times[1:], t0 + wall]
    steps = [(title, end - start) for title, start, end in zip(titles, times, ends, strict=True)]
    out: dict[str, Any] = {
        "preset": name,
        "status": result.status,
        "error": result.error,
        "wall_s": wall,
        "steps": steps,
        "guard": [m for m in messages if "int8" in m or m.startswith("warning:")],
    }
    types = [s.step_type for s in recipe.steps]
    summary = dict(enumerate(result.summary or []))
    if "finetune" in types and types.index("finetune") in summary:
        out["teacher_accuracy"] = summary[types.index("finetune")].get("accuracy")
        if result.variants:
            weights = Path(result.variants[0]) / "model.safetensors"
            out["teacher_bytes"] = weights.stat().st_size if weights.is_file() else None
    for i, t in enumerate(types):
        if i not in summary:
            continue
        if t == "evaluate":
            out["accuracy"] = summary[i].get("accuracy")
        elif t == "benchmark":
            out["p50_ms"] = summary[i].get("latency_p50_ms")
            out["size_bytes"] = summary[i].get("size_bytes")
    return out


def table(results: list[dict[str, Any]]) -> str:
    from slimpajama_gui.core.units import human_bytes

    def pct(v):
        return f"{100 * v:.1f} %" if isinstance(v, float) else "—"

    def size(v):
        return human_bytes(v) if v else "—"

    lines = [
        "| Preset | Result | Wall time | Teacher dev acc. | Final dev acc. | Size (teacher) "
        "| p50 latency, batch 1 |",
        "|---|---|---:|---:|---:|---:|---:|",
    ]
    for r in results:
        state = "done" if r["status"] == "done" else f"**{r['status']}**"
        p50 = f"{r['p50_ms']:.2f} ms" if r.get("p50_ms") else "—"
        lines.append(
            f"| {r['preset']} | {state} | {r['wall_s'] / 60:.1f} min | "
            f"{pct(r.get('teacher_accuracy'))} | {pct(r.get('accuracy'))} | "
            f"{size(r.get('size_bytes'))} ({size(r.get('teacher_bytes'))}) | {p50} |"
        )
    lines.append("")
    lines.append("Per step (seconds):")
    lines.append("")
    for r in results:
        parts = ", ".join(f"{title} {s:.0f}" for title, s in r["steps"])
        lines.append(f"- **{r['preset']}**: {parts}")
        if r["status"] != "done":
            lines.append(f"  - failed: {r['error']}")
        for text in r["guard"]:
            lines.append(f"  - {text}")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="training capped at a few steps")
    parser.add_argument("--doc", type=Path, help="write the section into this file instead")
    parser.add_argument("--presets", nargs="+", choices=PRESETS, default=list(PRESETS))
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory(prefix="presets-demo-") as tmp:
        scratch = Path(tmp)
        os.environ["SLIMPAJAMA_HOME"] = str(scratch / "home")
        if args.quick:
            from slimpajama_gui.core.techniques.train import MAX_STEPS_ENV

            os.environ[MAX_STEPS_ENV] = str(QUICK_TRAIN_STEPS)
        results = []
        load_start = _load()
        for name in args.presets:
            r = run_preset(name, args.quick, scratch)
            results.append(r)
            print(f"preset_{name}_status: {r['status']}", flush=True)
            print(f"preset_{name}_wall_s: {r['wall_s']:.1f}", flush=True)
            for key in ("teacher_accuracy", "accuracy", "size_bytes", "p50_ms"):
                if r.get(key) is not None:
                    print(f"preset_{name}_{key}: {r[key]}", flush=True)
            if r["error"]:
                print(f"preset_{name}_error: {r['error']}", flush=True)
    body = table(results)
    load_end = _load()
    print(body)
    # Wall times on a shared machine are upper bounds: the section says how busy it was.
    load = (
        f"\n\nLoad average (1 min) at the start and the end: {load_start} and {load_end}, on "
        f"{os.cpu_count()} cores; above the core count, other work shared the CPU and the "
        "wall times are upper bounds."
        if load_start and load_end
        else ""
    )
    section = (
        "## Presets on the demo data\n\n"
        "Each wizard preset at its real settings (the recipe in "
        "`resources/recipes/preset-NAME.yaml`: fine-tune the packaged MiniLM, which has no "
        "classifier head, then the preset's chain) on the built-in demo data, 440 train and "
        "100 dev rows, through `pipeline.run` as `slimpajama run` runs it. Accuracy is on "
        "the 100 dev rows, so one row is one point; the quantize step's accuracy guard "
        "judges a drop against that noise (its sentences are listed per preset). Size is "
        "the final variant's folder; latency is the preset's own benchmark step (2 threads)."
        + (
            "\n\n**--quick run: training capped, these are not the presets' figures.**"
            if args.quick
            else ""
        )
        + f"\n\n{body}{load}\n\nMachine: {machine()}\n\n"
        "    .venv/bin/python benchmarks/presets_demo.py"
    )
    if args.doc is not None:
        _report.DOC = args.doc
        _report.write_section("presets-demo", section)
    elif not args.quick:
        _report.write_section("presets-demo", section)
    return 0


def _load() -> str:
    """The 1-minute load average, e.g. ``"3.2"`` ("" where the system has none)."""
    try:
        return f"{os.getloadavg()[0]:.1f}"
    except (AttributeError, OSError):
        return ""


if __name__ == "__main__":
    sys.exit(main())
