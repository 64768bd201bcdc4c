"""Latency and throughput of several models, timed round-robin so drift hits them all alike.

Timing each model once, when it is built, puts minutes between two models' numbers; on
a shared 2-core machine the same int8 graph measured 2.0 to 3.2 ms that way, enough to
flip a comparison. :func:`interleaved_latency` times every model once per round over the
same sentences, in a rotating order, and pools the rounds.
"""

from __future__ import annotations

import argparse
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from slimpajama_gui.core.model.tokenizers import load_tokenizer
from slimpajama_gui.core.runtime.bench import (
    _pad_batch,
    encode_for_bench,
    runner_for,
    torch_threads,
)
from slimpajama_gui.core.runtime.loading import open_model


@dataclass
class Timed:
    """One model's pooled batch-1 latency and its batch-32 throughput."""

    p50: float  # ms, all rounds pooled
    p95: float
    rounds: list[float]  # each round's p50, ms
    throughput: float = float("nan")  # sentences/s in padded batches, median of rounds
    throughput_rounds: list[float] | None = None


def timer_of(folder: Path, threads: int) -> tuple[Callable, Any]:
    """(runner, tokenizer) as the app times ``folder``: the runner every benchmark path
    uses (``runner_for``: onnxruntime for ONNX variants, with ``threads``, else PyTorch)."""
    tokenizer = load_tokenizer(folder)
    model = open_model(folder).load_model(threads=threads)
    return runner_for(model, threads=threads), tokenizer


def interleaved_latency(
    models: Sequence[tuple[str, Callable, Any]],
    texts: Sequence[str],
    *,
    rounds: int,
    threads: int,
    max_length: int = 128,
    warmup: int = 10,
    batch: int = 32,
) -> dict[str, Timed]:
    """Time every ``(name, runner, tokenizer)`` on ``texts``, ``rounds`` times: one by one
    (batch-1 latency) and in padded batches of ``batch`` (throughput), as
    ``bench.benchmark`` does, every model once per round."""
    inputs = {name: encode_for_bench(tok, texts, max_length) for name, _, tok in models}
    batches = {
        name: [_pad_batch(items[i : i + batch]) for i in range(0, len(items), batch)]
        for name, items in inputs.items()
    }
    samples: dict[str, list[float]] = {name: [] for name, _, _ in models}
    per_round: dict[str, list[float]] = {name: [] for name, _, _ in models}
    rates: dict[str, list[float]] = {name: [] for name, _, _ in models}
    with torch_threads(threads), torch.inference_mode():
        for name, runner, _ in models:
            for item in inputs[name][:warmup]:
                runner(item)
        for r in range(rounds):
            shift = r % max(len(models), 1)
            for name, runner, _ in [*models[shift:], *models[:shift]]:
                this = []
                for item in inputs[name]:
                    t0 = time.perf_counter()
                    runner(item)
                    this.append(time.perf_counter() - t0)
                samples[name] += this
                per_round[name].append(1000 * float(np.median(this)))
                runner(batches[name][0])  # warm the batch shapes
                t0 = time.perf_counter()
                for padded in batches[name]:
                    runner(padded)
                rates[name].append(len(inputs[name]) / (time.perf_counter() - t0))
    out = {}
    for name in samples:
        ms = 1000 * np.asarray(samples[name])
        out[name] = Timed(
            float(np.percentile(ms, 50)),
            float(np.percentile(ms, 95)),
            per_round[name],
            float(np.median(rates[name])),
            rates[name],
        )
    return out


def add_run_arguments(parser: argparse.ArgumentParser, data: Path, what: str) -> None:
    """The options compress_sst2.py and peers_sst2.py share: teacher, data, budget, timing."""
    parser.add_argument("--teacher", type=Path, required=True, help="fine-tuned teacher folder")
    parser.add_argument("--data", type=Path, default=data, help="folder with train/dev/test.tsv")
    parser.add_argument(
        "--train-rows", type=int, help=f"cap the training rows of every {what} that trains"
    )
    parser.add_argument(
        "--epochs", type=float, default=1.0, help="epochs of every training step (default 1)"
    )
    parser.add_argument(
        "--lr", type=float, default=1e-4, help="learning rate of every training step"
    )
    parser.add_argument("--sentences", type=int, default=200, help="dev sentences timed at batch 1")
    parser.add_argument(
        "--rounds", type=int, default=5, help="interleaved batch-1 timing rounds at the end"
    )
    parser.add_argument("--device", choices=["auto", "cpu", "cuda"], help="where training runs")
