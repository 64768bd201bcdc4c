"""kill -9 during saves: is an output ever lost? (docs/reliability.md F4, O3)

    .venv/bin/python benchmarks/kill_save.py                # 40 kills, about a minute
    .venv/bin/python benchmarks/kill_save.py --kills 200 --seed 7

A child process (the repo's Python, importing only ``core.storage.atomic``) saves a tiny
classifier again and again into ``OUT/01-finetune`` through ``atomic_dir``, the
mechanism every variant save uses, alternating between two versions A and B. The parent
kills it with SIGKILL:

- at fixed points: between the two renames of the portable swap (the child blocks there),
  right after the one-step exchange, and while the staging folder is being written;
- at random moments while it saves, half of them with the one-step exchange, half with
  the portable two renames.

After each kill it "restarts" the way the app and the CLI do
(``leftovers.recover_outputs`` over the history, which knows ``OUT``), then checks that
``OUT/01-finetune`` is there, holds exactly A's or B's files, loads, and predicts the
same probabilities as that version did before any kill, and that no ``.staging-``,
``.old-`` or ``.trash-`` folder is left. Prints ``key: value`` lines; exit code 1 when
an output was lost or debris was left.
"""

from __future__ import annotations

import argparse
import hashlib
import os
import random
import shutil
import signal
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
TEXTS = ["a good film", "the plot was boring and bad", "not very funny but fun"]
TARGET = "01-finetune"

# --------------------------------------------------------------------------- child

CHILD = r"""
import os, shutil, sys, time
from pathlib import Path
from slimpajama_gui.core.storage import atomic

a, b, target, mode = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3]), sys.argv[4]

def pause(where):
    print(where, flush=True)
    time.sleep(3600)

if mode in ("renames", "between-renames"):
    atomic._exchange = lambda x, y: False
if mode == "between-renames":
    real = os.replace
    def replace(src, dst):
        real(src, dst)
        if Path(src) == target:
            pause("between")
    atomic.os.replace = replace
if mode == "after-exchange":
    real_exchange = atomic._exchange
    def exchange(x, y):
        done = real_exchange(x, y)
        pause("exchanged")
        return done
    atomic._exchange = exchange
print("ready", flush=True)
i = 0
while True:
    source = a if i % 2 else b
    with atomic.atomic_dir(target) as staging:
        for f in sorted(source.iterdir()):
            shutil.copyfile(f, staging / f.name)
            if mode == "in-staging":
                pause("staging")
    i += 1
"""


def _child(a: Path, b: Path, target: Path, mode: str) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": str(REPO)}
    return subprocess.Popen(
        [sys.executable, "-c", CHILD, str(a), str(b), str(target), mode],
        stdout=subprocess.PIPE,
        text=True,
        env=env,
    )


# --------------------------------------------------------------------------- parent


def make_versions(work: Path) -> tuple[Path, Path]:
    """Two saved variants (A, B) of a tiny classifier with different weights."""
    import torch
    from transformers import BertConfig, BertForSequenceClassification

    from slimpajama_gui.core.model.catalog import packaged_minilm_path
    from slimpajama_gui.core.model.saving import copy_tokenizer_files
    from slimpajama_gui.core.storage.variant import VariantRecord

    folders = []
    for seed, name in ((0, "A"), (1, "B")):
        torch.manual_seed(seed)
        config = BertConfig(
            vocab_size=30522, hidden_size=16, num_hidden_layers=1, num_attention_heads=2,
            intermediate_size=32, max_position_embeddings=64, num_labels=2,
        )  # fmt: skip
        folder = work / "versions" / name
        BertForSequenceClassification(config).save_pretrained(folder, safe_serialization=True)
        copy_tokenizer_files(packaged_minilm_path(), folder)
        VariantRecord(label_names=["negative", "positive"], source_model=name).write(folder)
        folders.append(folder)
    return folders[0], folders[1]


def fingerprint(folder: Path) -> dict[str, str]:
    return {
        p.name: hashlib.sha256(p.read_bytes()).hexdigest()
        for p in sorted(folder.iterdir())
        if p.is_file()
    }


def predict(folder: Path):
    from slimpajama_gui.core.runtime.predictor import ModelPredictor

    return ModelPredictor(folder).scores(TEXTS).probs


@dataclass
class Kill:
    mode: str
    delay_s: float | None
    previous: str  # the version under the name before the kill
    missing_before_recovery: bool
    debris_before: int
    outcome: str  # "A", "B" or "lost"
    same_predictions: bool
    debris_after: list[str] = field(default_factory=list)


def debris(out: Path) -> list[str]:
    return sorted(p.name for p in out.iterdir() if p.name != TARGET)


def run(work: Path, kills: int = 40, seed: int = 0, max_delay_s: float = 0.4) -> list[Kill]:
    """``kills`` kills of a saving child, each followed by the recovery at start.

    Returns one :class:`Kill` per kill, in order.
    """
    import numpy as np

    from slimpajama_gui.core.storage.history import JobStore
    from slimpajama_gui.core.storage.leftovers import recover_outputs

    rng = random.Random(seed)
    a, b = make_versions(work)
    expected = {"A": (fingerprint(a), predict(a)), "B": (fingerprint(b), predict(b))}
    out = work / "out"
    shutil.copytree(a, out / TARGET)
    fixed = ["between-renames", "between-renames", "after-exchange", "in-staging"]
    modes = fixed + [("exchange", "renames")[i % 2] for i in range(max(kills - len(fixed), 0))]
    results = []
    with JobStore(work / "history.sqlite3") as store:
        # The history knows the output folder, as it knows every job's.
        store.create_job("kill-save", "name: kill-save\n", str(out))
        previous = "A"
        for mode in modes[:kills]:
            child = _child(a, b, out / TARGET, mode)
            try:
                assert child.stdout is not None
                if child.stdout.readline().strip() != "ready":
                    raise RuntimeError("the saving child did not start")
                delay = None
                if mode in ("exchange", "renames"):
                    delay = rng.uniform(0, max_delay_s)
                    time.sleep(delay)
                else:
                    child.stdout.readline()  # it blocks at the point named
            finally:
                child.send_signal(signal.SIGKILL)
                child.wait()
                if child.stdout is not None:
                    child.stdout.close()
            missing = not (out / TARGET).exists()
            before = len(debris(out))
            recover_outputs(store)  # what the app and the CLI run when they start
            outcome, same = "lost", False
            if (out / TARGET).is_dir():
                found = fingerprint(out / TARGET)
                for name, (prints, probs) in expected.items():
                    if found == prints:
                        outcome = name
                        same = bool(np.array_equal(predict(out / TARGET), probs))
            results.append(Kill(mode, delay, previous, missing, before, outcome, same, debris(out)))
            previous = outcome
    return results


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--kills", type=int, default=40, help="how many kills (default 40)")
    parser.add_argument("--seed", type=int, default=0, help="seed of the random delays")
    parser.add_argument("--work", type=Path, help="working folder (default: a temporary one)")
    args = parser.parse_args(argv)
    work = args.work or Path(tempfile.mkdtemp(prefix="kill-save-"))
    started = time.monotonic()
    results = run(work, kills=args.kills, seed=args.seed)
    lost = sum(r.outcome == "lost" or not r.same_predictions for r in results)
    left = sum(bool(r.debris_after) for r in results)
    print(f"kills: {len(results)}")
    print(f"kills_at_fixed_points: {sum(r.delay_s is None for r in results)}")
    print(
        f"kills_with_output_missing_before_recovery: {sum(r.missing_before_recovery for r in results)}"
    )
    print(f"kills_that_left_debris_before_recovery: {sum(r.debris_before > 0 for r in results)}")
    print(f"outputs_previous_version: {sum(r.outcome == r.previous for r in results)}")
    print(f"outputs_new_version: {sum(r.outcome not in ('lost', r.previous) for r in results)}")
    print(f"outputs_lost: {lost}")
    print(f"debris_left_after_recovery: {left}")
    print(f"seconds: {time.monotonic() - started:.1f}")
    if args.work is None:
        shutil.rmtree(work, ignore_errors=True)
    return 1 if lost or left else 0


if __name__ == "__main__":
    sys.exit(main())
