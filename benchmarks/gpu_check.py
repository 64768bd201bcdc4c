"""A short SST-2 fine-tune and distillation on a CUDA GPU: examples/s and dev accuracy.

    benchmarks/gpu_check.sh                         # the tests marked gpu, then this
    .venv/bin/python benchmarks/gpu_check.py        # this alone
    .venv/bin/python benchmarks/gpu_check.py --rows 5000   # shorter

Runs one recipe through the same pipeline as the app: fine-tune the packaged MiniLM on
the first ``--rows`` rows of SST-2's train split (1 epoch), evaluate on dev (872 rows),
distill it into a 3-layer student (2 epochs, teacher logits cached), evaluate again.
Prints, per training step, its examples/s (every row of the step's optimizer steps over
its wall time, the loop's own figure) and the variant's dev accuracy, and where it
trained. Expects the shared data beside the checkout: ../shared/data/sst2/{train,dev}.tsv.
Writes nothing into docs/; copy the figures into docs/benchmarks.md by hand, with the
date and the GPU's name it prints.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from slimpajama_gui.core.jobs.pipeline import PipelineCallbacks, run
from slimpajama_gui.core.plan.recipe import recipe_from_yaml
from slimpajama_gui.core.storage.history import JobStore
from slimpajama_gui.core.storage.variant import VariantRecord

REPO = Path(__file__).resolve().parents[1]
DATA = REPO.parent / "shared" / "data" / "sst2"

RECIPE = """\
name: gpu-check
model: packaged
dataset:
  train: {data}/train.tsv
  eval: {data}/dev.tsv
  text_column: sentence
  label_column: label
  labels: [negative, positive]
  max_length: 64
  max_rows: {rows}
output: {output}
device: {device}
steps:
  - {{type: finetune, epochs: 1, learning_rate: 1.0e-4, batch_size: 32, warmup_ratio: 0.06, log_every_steps: 20}}
  - {{type: evaluate, split: eval}}
  - {{type: distill, student_layers: [0, 2, 4], epochs: 2, learning_rate: 1.0e-4, batch_size: 32}}
  - {{type: evaluate, split: eval}}
"""


class _Steps(PipelineCallbacks):
    """One line per step, so a minutes-long run shows it is moving."""

    def on_message(self, text: str) -> None:
        print(f"  {text}", flush=True)

    def on_step_start(self, index, step, count) -> None:
        self.started = time.monotonic()
        print(f"step {index + 1}/{count} {step.step_type}…", flush=True)

    def on_step_end(self, index, step, summary) -> None:
        print(f"  done in {time.monotonic() - self.started:.0f} s", flush=True)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--rows", type=int, default=20_000, help="SST-2 training rows used")
    parser.add_argument("--device", default="cuda", help="cuda (default), cuda:N or cpu")
    parser.add_argument("--data", type=Path, default=DATA, help="folder with train.tsv, dev.tsv")
    args = parser.parse_args(argv)
    if not (args.data / "train.tsv").is_file():
        print(f"error: {args.data / 'train.tsv'} not found; pass --data FOLDER", file=sys.stderr)
        return 1
    if args.device.startswith("cuda") and not torch.cuda.is_available():
        print("No CUDA GPU here (torch.cuda.is_available() is False); nothing to time.")
        return 0
    with tempfile.TemporaryDirectory(prefix="gpu-check-") as tmp:
        output = Path(tmp) / "out"
        text = RECIPE.format(data=args.data, rows=args.rows, output=output, device=args.device)
        recipe = recipe_from_yaml(text, source="gpu_check recipe", base_dir=Path(tmp))
        started = time.monotonic()
        with JobStore(Path(tmp) / "history.sqlite3") as store:
            result = run(recipe, _Steps(), store=store)
            wall = time.monotonic() - started
            if result.status != "done":
                print(f"error: the job {result.status}: {result.error}", file=sys.stderr)
                return 1
            print(f"torch {torch.__version__}; whole job {wall / 60:.1f} min")
            for index, name in ((0, "01-finetune"), (2, "03-distill")):
                record = VariantRecord.read(output / name)
                rates = store.metrics(result.job_id, index, "examples_per_second")
                rate = rates[-1].value if rates else float("nan")
                where = record.metrics["training"].get("trained_on", {})
                gpu = f" ({where['gpu']})" if "gpu" in where else ""
                accuracy = 100 * record.metrics["eval"]["accuracy"]
                print(
                    f"{name[3:]:<9} {rate:8.0f} examples/s on {where.get('device')}{gpu}, "
                    f"{where.get('precision')}; dev accuracy {accuracy:.2f} % "
                    f"({record.metrics['eval']['n']} rows)"
                )
    return 0


if __name__ == "__main__":
    sys.exit(main())
