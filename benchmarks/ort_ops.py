"""Where an ONNX result's batch-1 time goes on this CPU, and what ONNX Runtime settings change it.

    python benchmarks/ort_ops.py --teacher TEACHER_FOLDER --result ONNX_RESULT_FOLDER [--write]

Two parts, both on the same dev sentences (SST-2 dev by default, batch 1):

1. **Per operator.** ONNX Runtime's own profiler (``SessionOptions.enable_profiling``) on the
   result as the app runs it (``OrtRunner``'s settings, 2 intra-op threads): for each
   operator type, the microseconds a run spends in it, its calls a run and its
   microseconds a call. The profiler adds a few microseconds to every node, so these add
   up to more than the run's untraced time; read them as shares, not as latency.
2. **Settings against the teacher.** Batch-1 p50 of the fp32 PyTorch teacher and of the
   result under ONNX Runtime settings a user could pick (the app's: 2 threads; 1 thread;
   2 threads with the pool's spin-wait off), timed round-robin in one run
   (``_timing.interleaved_latency``) so each ratio to the teacher comes from the same load.

It explains a speed ratio; it does not change one. ``--write`` puts both tables in
docs/benchmarks.md, section ort-ops.
"""

from __future__ import annotations

import argparse
import collections
import json
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402
from _timing import interleaved_latency, timer_of  # noqa: E402

from slimpajama_gui.core.data.tables import read_table  # noqa: E402
from slimpajama_gui.core.runtime.bench import encode_for_bench  # noqa: E402
from slimpajama_gui.core.runtime.onnx_runner import ONNX_NAME, OrtRunner, session_options  # noqa: E402

DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2" / "dev.tsv"

#: (name, intra-op threads, session config entries): the settings part 2 compares.
SETTINGS = (
    ("onnxruntime, 2 threads (the app's)", 2, {}),
    ("onnxruntime, 1 thread", 1, {}),
    ("onnxruntime, 2 threads, spin-wait off", 2, {"session.intra_op.allow_spinning": "0"}),
)


def session(path: Path, threads: int, config: dict[str, str], profile_dir: Path | None = None):
    """An ONNX Runtime CPU session with OrtRunner's options plus ``config`` entries."""
    import onnxruntime as ort

    options = session_options(threads)
    for key, value in config.items():
        options.add_session_config_entry(key, value)
    if profile_dir is not None:
        options.enable_profiling = True
        options.profile_file_prefix = str(profile_dir / "ort")
    return ort.InferenceSession(str(path), options, providers=["CPUExecutionProvider"])


def op_profile(runner: OrtRunner, inputs: list, threads: int) -> list[tuple[str, float, float]]:
    """(operator type, µs a run, calls a run) from ONNX Runtime's profiler, largest first."""
    with tempfile.TemporaryDirectory(prefix="ort-ops-") as scratch:
        runner.session = session(runner.path, threads, {}, Path(scratch))
        for item in inputs:
            runner(item)
        trace = Path(runner.session.end_profiling())
        events = json.loads(trace.read_text(encoding="utf-8"))
    spent: dict[str, float] = collections.defaultdict(float)
    calls: collections.Counter[str] = collections.Counter()
    for event in events:
        if event.get("cat") == "Node" and event.get("name", "").endswith("_kernel_time"):
            op = event["args"]["op_name"]
            spent[op] += event["dur"]
            calls[op] += 1
    n = len(inputs)
    return sorted(((op, spent[op] / n, calls[op] / n) for op in spent), key=lambda r: -r[1])


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True, help="the fp32 teacher folder")
    parser.add_argument("--result", type=Path, required=True, help="an ONNX result folder")
    parser.add_argument("--dev", type=Path, default=DEV, help="TSV with a sentence column")
    parser.add_argument("--sentences", type=int, default=200, help="dev sentences (batch 1)")
    parser.add_argument("--rounds", type=int, default=5, help="round-robin timing rounds")
    parser.add_argument("--write", action="store_true", help="write section ort-ops")
    parser.add_argument("--note", default="", help="a paragraph to keep under the tables")
    args = parser.parse_args(argv)
    if not (args.result / ONNX_NAME).is_file():
        parser.error(f"--result {args.result}: no {ONNX_NAME} there; give an ONNX result folder")
    t0 = time.perf_counter()
    texts = list(read_table(args.dev).column("sentence"))[: args.sentences]

    runner, tokenizer = timer_of(args.result, 2)
    inputs = encode_for_bench(tokenizer, texts, 128)
    for item in inputs[:10]:
        runner(item)
    ops = op_profile(OrtRunner(runner.path, threads=2), inputs, 2)
    total = sum(us for _, us, _ in ops)
    op_lines = [
        "| Operator | µs a run (profiled) | Share | Calls a run | µs a call |",
        "|---|---|---|---|---|",
        *(
            f"| {op} | {us:.1f} | {100 * us / total:.0f} % | {c:g} | {us / c:.1f} |"
            for op, us, c in ops
            if us / total >= 0.01
        ),
    ]

    models = [("teacher fp32 (PyTorch)", *timer_of(args.teacher, 2))]
    for name, threads, config in SETTINGS:
        variant = OrtRunner(runner.path, threads=threads)
        variant.session = session(runner.path, threads, config)
        models.append((name, variant, tokenizer))
    timed = interleaved_latency(models, texts, rounds=args.rounds, threads=2)
    teacher = timed[models[0][0]].p50
    set_lines = [
        "| Model | p50 ms batch 1 (rounds) | × faster than the teacher |",
        "|---|---|---|",
        *(
            f"| {name} | {t.p50:.3f} ({min(t.rounds):.3f}-{max(t.rounds):.3f}) | "
            f"{teacher / t.p50:.1f}x |"
            for name, t in timed.items()
        ),
    ]
    shown = list(argv if argv is not None else sys.argv[1:])
    if "--note" in shown:  # the note is under the tables, not repeated in the command
        i = shown.index("--note")
        shown = [*shown[:i], "--note", "NOTE", *shown[i + 2 :]]
    command = "python benchmarks/ort_ops.py " + " ".join(shown)
    body = f"""## Where an ONNX result's time goes (ort-ops)

Command: `{command}`

Machine: {machine()}. Result: `{args.result}`; {len(texts)} dev sentences at batch 1.
Took {time.perf_counter() - t0:.0f} s.

Per operator (ONNX Runtime's profiler, 2 intra-op threads; the profiler adds a few µs to
every node, so read the shares):

{chr(10).join(op_lines)}

ONNX Runtime settings against the fp32 PyTorch teacher (2 threads), {args.rounds} rounds
round-robin in one run:

{chr(10).join(set_lines)}

{args.note}
"""
    print(body)
    if args.write:
        write_section("ort-ops", body)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
