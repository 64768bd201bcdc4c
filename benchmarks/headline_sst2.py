"""The headline comparison on SST-2: our chain's result against the fp32 PyTorch teacher
and against ONNX Runtime's documented BERT int8 path on the same teacher, in one run.

    SLIMPAJAMA_HOME=HOME python benchmarks/headline_sst2.py --teacher TEACHER_FOLDER \\
        --result RESULT_FOLDER --recipe RECIPE.yaml --out headline.json

TEACHER_FOLDER is the fine-tuned teacher (resources/recipes/sst2-finetune.yaml's
01-finetune), RESULT_FOLDER the last variant of the chain (e.g.
resources/recipes/sst2-balanced-full.yaml); both jobs' wall times are read from the
history in SLIMPAJAMA_HOME and stated as the whole training time. The ORT peer is built as
``peers_sst2.py`` builds it (``optimizer.optimize_model(model_type="bert")`` then
``quantize_dynamic(per_channel=True, reduce_range=False)``). Every model is measured by
the same code (``peers_sst2.Peers.measure``: dev and test accuracy, size of the shipped
folder), then timed round-robin at batch 1 on 2 threads (``_timing.interleaved_latency``,
200 dev sentences, 5 rounds) so the ratios come from one run under the same load. Test
accuracy is read here only, after every choice was made on dev. Prints a markdown table
(the speed ratio with the range of the rounds' own ratios); ``--out`` also writes the
figures as JSON; ``--write`` also puts the table (and ``--note``) in docs/benchmarks.md,
section headline-sst2, and ``distill_speed.py report --headline OUT`` can keep it with the
training-speed figures.
"""

from __future__ import annotations

import argparse
import json
import math
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402
from _timing import interleaved_latency, timer_of  # noqa: E402
from peers_sst2 import SST2, Peers, _records, lineage, peer_ort_int8_optimized  # noqa: E402

from slimpajama_gui.core.plan.presets import step_summary  # noqa: E402
from slimpajama_gui.core.plan.steps import step_from_dict  # noqa: E402
from slimpajama_gui.core.runtime.loading import open_model  # noqa: E402
from slimpajama_gui.core.storage.atomic import atomic_write_text  # noqa: E402
from slimpajama_gui.core.storage.history import JobStore  # noqa: E402
from slimpajama_gui.core.storage.variant import VariantRecord  # noqa: E402

TEACHER, ORT, OURS = (
    "teacher fp32 (PyTorch)",
    "ONNX Runtime int8, BERT optimizer + per-channel",
    "ours",
)
#: The must-show: (smaller, faster, test points) against the teacher and against ORT.
TARGETS = {TEACHER: (10.0, 10.0, 1.0), ORT: (2.0, 1.5, 0.5)}


def job_minutes(folder: Path, stop: Path | None = None) -> tuple[float | None, str]:
    """The wall time (minutes) of every job that made ``folder``, and their names.

    Follows the variants' parents back to ``stop`` (the teacher, whose own job is counted
    apart), so a chain run as two jobs (say, the distillation, then vocabulary and int8
    from its result) is charged both.
    """
    ids: list[int] = []
    for record in _records(folder, stop):
        if record.get("job_id") is not None and record["job_id"] not in ids:
            ids.append(record["job_id"])
    if not ids:
        return None, ""
    with JobStore() as store:
        jobs = [store.get_job(i) for i in reversed(ids)]
    if any(not job.duration for job in jobs):
        return None, " + ".join(job.name for job in jobs)
    return sum(job.duration for job in jobs) / 60, "' + '".join(job.name for job in jobs)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--result", type=Path, required=True)
    parser.add_argument("--recipe", type=Path, required=True, help="the chain's recipe")
    parser.add_argument("--data", type=Path, default=SST2)
    parser.add_argument(
        "--work", type=Path, help="folder for the ORT peer's files (default: a temp folder)"
    )
    parser.add_argument(
        "--out", type=Path, help="also write the rows and verdicts as JSON to this file"
    )
    parser.add_argument("--rounds", type=int, default=5)
    parser.add_argument("--sentences", type=int, default=200)
    parser.add_argument(
        "--write",
        action="store_true",
        help="also write the table to docs/benchmarks.md, section headline-sst2",
    )
    parser.add_argument("--note", help="a paragraph to keep with the figures (with --write)")
    args = parser.parse_args()
    args.threads, args.repeats, args.train_rows = 2, None, None
    started = time.monotonic()
    work = args.work or Path(tempfile.mkdtemp(prefix="headline-sst2-"))
    p = Peers(args, args.teacher.resolve(), work)

    rows, timers = {}, {}
    rows[ORT] = peer_ort_int8_optimized(p)
    timers[ORT] = p.last_timer
    teacher = open_model(args.teacher).load_model().eval()
    rows[TEACHER] = p.measure_torch(teacher, p.tokenizer(args.teacher), args.teacher, 0.0)
    timers[TEACHER] = p.last_timer
    runner, tokenizer = timer_of(args.result, args.threads)
    record = VariantRecord.read(args.result)
    rows[OURS] = p.measure(
        runner=runner, model=open_model(args.result).load_model(), tokenizer=tokenizer,
        folder=args.result, params=record.parameters, seconds=0.0,
    )  # fmt: skip
    timers[OURS] = (runner, tokenizer)
    texts = p.dataset.eval.texts[: args.sentences]
    timed = interleaved_latency(
        [(name, *timers[name]) for name in (TEACHER, ORT, OURS)],
        texts, rounds=args.rounds, threads=args.threads,
    )  # fmt: skip
    for name, t in timed.items():
        rows[name].update(p50=t.p50, p95=t.p95, p50_rounds=t.rounds, tput=t.throughput)

    ours = rows[OURS]
    n_test = len(p.dataset.test)
    verdicts = {}
    for base, (smaller, faster, points) in TARGETS.items():
        b = rows[base]
        got = {
            "smaller": b["size"] / ours["size"],
            "faster": b["p50"] / ours["p50"],
            # Both were timed back to back in every round, so each round's ratio is one
            # reading under one load; their spread is how far the pooled ratio can be trusted.
            "faster_rounds": [
                t / o for t, o in zip(b["p50_rounds"], ours["p50_rounds"], strict=True)
            ],
            "test_points": 100 * (ours["test"] - b["test"]),
        }
        got["meets"] = (
            got["smaller"] >= smaller and got["faster"] >= faster and -got["test_points"] <= points
        )
        got["targets"] = {"smaller": smaller, "faster": faster, "max_test_loss": points}
        verdicts[base] = got
    teacher_min, teacher_job = job_minutes(args.teacher)
    chain_min, chain_job = job_minutes(args.result, stop=args.teacher)
    se = math.sqrt(rows[TEACHER]["test"] * (1 - rows[TEACHER]["test"]) / n_test)

    def line(name: str) -> str:
        r = rows[name]
        spread = f"{min(r['p50_rounds']):.2f}-{max(r['p50_rounds']):.2f}"
        return (
            f"| {name} | {100 * r['dev']:.2f} | {100 * r['test']:.2f} | {r['size'] / 1e6:.1f} MB | "
            f"{r['params'] / 1e6:.1f} M | {r['p50']:.2f} ({spread}) | {r['p95']:.2f} | {r['tput']:.0f} | {r['backend']} |"
        )

    def verdict(base: str) -> str:
        v = verdicts[base]
        t = v["targets"]
        return (
            f"| against {base} | {v['smaller']:.1f}x (>= {t['smaller']:g}x) | "
            f"{v['faster']:.1f}x (>= {t['faster']:g}x; rounds {min(v['faster_rounds']):.1f}-"
            f"{max(v['faster_rounds']):.1f}x) | {v['test_points']:+.2f} (>= -{t['max_test_loss']:g}) | "
            f"{'**yes**' if v['meets'] else '**no**'} |"
        )

    chain = "; ".join(step_summary(step_from_dict(s)) for s in lineage(args.result, args.teacher))
    md = [
        "## The headline chain on the full train set (issue 13)",
        "",
        f"Command: `SLIMPAJAMA_HOME=HOME python benchmarks/headline_sst2.py --teacher {args.teacher.name} "
        f"--result {args.result.name} --recipe {args.recipe.name}`",
        "",
        f"Machine: {machine()}. Chain: `{args.recipe.name}` "
        f"({chain}). "
        "Every setting was chosen on dev (or fixed before the run); test was read once, here.",
        "",
        "| Model | Dev acc | Test acc | Size | Params | p50 ms batch 1, 2 threads (round range) | p95 ms | Batch-32 /s | Backend |",
        "|---|---|---|---|---|---|---|---|---|",
        line(TEACHER),
        line(ORT),
        line(OURS),
        "",
        "| Ours | Smaller | Faster (p50) | Test points | Target met |",
        "|---|---|---|---|---|",
        verdict(TEACHER),
        verdict(ORT),
        "",
        f"Test: {n_test} sentences, one standard error of the teacher's accuracy {100 * se:.2f} points. "
        f"Whole training time on this machine (shared with other work): teacher fine-tune "
        f"{teacher_min:.1f} min (job '{teacher_job}') + chain {chain_min:.1f} min (jobs '{chain_job}') = "
        f"{(teacher_min or 0) + (chain_min or 0):.1f} min. This comparison took "
        f"{(time.monotonic() - started) / 60:.1f} min.",
    ]
    out = {
        "rows": rows,
        "verdicts": verdicts,
        "teacher_minutes": teacher_min,
        "chain_minutes": chain_min,
        "markdown": "\n".join(md),
    }
    if args.out:
        atomic_write_text(args.out, json.dumps(out, indent=2, default=str))
    print(out["markdown"])
    if args.write:
        write_section("headline-sst2", "\n\n".join(filter(None, [out["markdown"], args.note])))
    return 0


if __name__ == "__main__":
    sys.exit(main())
