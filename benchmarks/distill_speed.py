"""Training speed with and without length-grouped batches, and the headline distillation run.

    python benchmarks/distill_speed.py speed [--steps 40] [--rounds 2]
    python benchmarks/distill_speed.py report --speed FILE.json [--headline FILE.json]

``speed`` trains the packaged MiniLM (new 2-class head) on SST-2 train rows for
``--steps`` steps of batch 32 twice per round: once with batches in plain shuffled order
(each padded to its longest row) and once grouped by length (``TrainConfig.group_by_length``,
what finetune and distill use), alternating so machine load hits both alike. It prints
and saves examples/s and the pad tokens per batch. ``report`` writes the
"distill-speed" section of docs/benchmarks.md from the saved figures.
"""

from __future__ import annotations

import argparse
import json
import statistics
import sys
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

from slimpajama_gui.core.data import DatasetSpec, load_dataset  # noqa: E402
from slimpajama_gui.core.data.batching import batches, encode_split  # noqa: E402
from slimpajama_gui.core.model.catalog import packaged_minilm_path  # noqa: E402
from slimpajama_gui.core.runtime.loading import open_model  # noqa: E402
from slimpajama_gui.core.storage.atomic import atomic_write_text  # noqa: E402
from slimpajama_gui.core.techniques.train import TrainConfig, train  # noqa: E402

SST2 = Path("/work/shared/data/sst2")


def speed(args: argparse.Namespace) -> dict:
    import torch

    torch.set_num_threads(args.threads)
    data = load_dataset(
        DatasetSpec(train=str(args.data / "train.tsv"), eval=str(args.data / "dev.tsv"))
    )
    handle = open_model(packaged_minilm_path())
    tokenizer = handle.load_tokenizer()
    enc = encode_split(data.train, tokenizer, 128)
    runs: dict[str, list[dict]] = {"plain": [], "grouped": []}
    for r in range(args.rounds):
        for mode in ("plain", "grouped") if r % 2 == 0 else ("grouped", "plain"):
            model = handle.load_model(num_labels=2)
            widths: list[int] = []
            real: list[int] = []

            def epoch_batches(epoch: int, mode=mode, widths=widths, real=real):
                for b in batches(
                    enc, data.train.labels, 32, True, epoch, tokenizer.pad_token_id,
                    sort_by_length=mode == "grouped",
                ):  # fmt: skip
                    widths.append(int(b["input_ids"].shape[1]))
                    real.append(int(b["attention_mask"].sum()))
                    yield b

            config = TrainConfig(
                epochs=1, max_steps=args.steps, learning_rate=5e-5, batch_size=32,
                group_by_length=mode == "grouped", log_every_steps=args.steps, device="cpu",
            )  # fmt: skip
            start = time.perf_counter()
            result = train(model, epoch_batches, -(-len(enc) // 32), config)
            wall = time.perf_counter() - start
            row = {
                "examples_per_second": result.examples_per_second,
                "wall_seconds": wall,
                "steps": result.steps,
                "mean_padded_width": statistics.mean(widths[: result.steps]),
                "pad_share": 1
                - sum(real[: result.steps]) / sum(32 * w for w in widths[: result.steps]),
            }
            runs[mode].append(row)
            print(mode, json.dumps(row), flush=True)
    summary = {
        mode: {
            "examples_per_second": statistics.median(r["examples_per_second"] for r in rows),
            "mean_padded_width": statistics.mean(r["mean_padded_width"] for r in rows),
            "pad_share": statistics.mean(r["pad_share"] for r in rows),
            "rounds": rows,
        }
        for mode, rows in runs.items()
    }
    summary["speedup"] = (
        summary["grouped"]["examples_per_second"] / summary["plain"]["examples_per_second"]
    )
    summary["command"] = " ".join(["python benchmarks/distill_speed.py", *sys.argv[1:]])
    summary["setup"] = (
        f"packaged MiniLM (6 layers, new 2-class head), SST-2 train ({len(enc):,} rows), "
        f"max_length 128, batch 32, {args.steps} steps per run, {args.rounds} runs each, "
        f"{args.threads} torch threads, alternating"
    )
    summary["machine"] = machine()
    return summary


def choices(folders: list[Path]) -> list[str]:
    """A table of distillation runs (variant folders), for the settings chosen on dev."""
    from slimpajama_gui.core.storage.variant import VariantRecord

    lines = [
        "| Student | Loss | Epochs | Dev acc | Training s | Examples/s | Teacher logits |",
        "|---|---|---|---|---|---|---|",
    ]
    for folder in folders:
        r = VariantRecord.read(folder)
        step, t, d = r.step or {}, r.metrics["training"], r.distill or {}
        ffn = step.get("ffn_fraction") or 0
        loss = f"KD (T={step.get('temperature'):g}, alpha={step.get('alpha_kd'):g})"
        if step.get("hidden_mse"):
            loss += f" + hidden MSE {step['hidden_mse']:g}"
        lines.append(
            f"| layers {', '.join(map(str, d.get('teacher_layers', [])))}"
            f"{f', {100 * ffn:g} % of FFN removed' if ffn else ', full FFN'} | {loss} | "
            f"{step.get('epochs', float('nan')):g} | {100 * t['eval_accuracy']:.2f} | {t.get('train_seconds', float('nan')):.0f} | "
            f"{t.get('examples_per_second', float('nan')):.1f} | {d.get('teacher_logits', '?')} |"
        )
    return lines


def report(
    speed_fig: dict,
    headline: dict | None,
    choice_rows: list[str],
    note: str | None,
    full_rows: list[str] = (),
) -> str:
    p, g = speed_fig["plain"], speed_fig["grouped"]
    lines = [
        "## Training speed: length-grouped batches (issue 13)",
        "",
        f"Command: `{speed_fig['command']}`",
        "",
        f"Machine: {speed_fig['machine']}. Setup: {speed_fig['setup']}; the machine was "
        "shared with other jobs, so the two orders alternate and the median is shown.",
        "",
        "| Batch order | Training examples/s (median) | Mean padded width (tokens) | Pad tokens |",
        "|---|---|---|---|",
        f"| Shuffled, padded per batch (before) | {p['examples_per_second']:.1f} | {p['mean_padded_width']:.1f} | {100 * p['pad_share']:.0f} % |",
        f"| Grouped by length (after, the default) | {g['examples_per_second']:.1f} | {g['mean_padded_width']:.1f} | {100 * g['pad_share']:.0f} % |",
        "",
        f"Speed-up: **{speed_fig['speedup']:.2f}x** examples/s.",
    ]
    if choice_rows:
        lines += [
            "",
            "### Choices made on dev (8,000 train rows, 1 epoch, same teacher)",
            "",
            *choice_rows,
        ]
    if full_rows:
        lines += [
            "",
            "### Students on the full train set (67,349 rows, same teacher; dev only)",
            "",
            *full_rows,
        ]
    if headline:
        lines += ["", headline["markdown"]]
    if note:
        lines += ["", note]
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    sub = parser.add_subparsers(dest="command", required=True)
    s = sub.add_parser("speed")
    s.add_argument("--data", type=Path, default=SST2)
    s.add_argument("--steps", type=int, default=40)
    s.add_argument("--rounds", type=int, default=2)
    s.add_argument("--threads", type=int, default=2)
    s.add_argument("--out", type=Path, default=Path("distill-speed.json"))
    r = sub.add_parser("report")
    r.add_argument("--speed", type=Path, required=True)
    r.add_argument("--headline", type=Path)
    r.add_argument("--choice", type=Path, nargs="*", default=[], help="distill variant folders")
    r.add_argument(
        "--full-choice", type=Path, nargs="*", default=[], help="distill folders, all rows"
    )
    r.add_argument("--note", help="a paragraph to keep with the figures")
    args = parser.parse_args()
    if args.command == "speed":
        fig = speed(args)
        atomic_write_text(args.out, json.dumps(fig, indent=2))
        print(json.dumps({k: v for k, v in fig.items() if k not in ("plain", "grouped")}))
        return 0
    speed_fig = json.loads(args.speed.read_text())
    headline = json.loads(args.headline.read_text()) if args.headline else None
    full = choices(args.full_choice) if args.full_choice else []
    body = report(speed_fig, headline, choices(args.choice), args.note, full)
    print(body)
    write_section("distill-speed", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
