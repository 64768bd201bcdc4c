"""Do ONNX variants predict what the PyTorch model predicts? Measured on SST-2 dev.

    .venv/bin/python benchmarks/onnx_parity.py --teacher RESULT_FOLDER

Exports the teacher to ONNX (fp32) and to onnxruntime int8 (per-channel and per-tensor),
runs all 872 dev sentences through each and through PyTorch fp32, and reports the
largest logit difference and the argmax agreement with PyTorch. Writes the
"onnx-parity" section of docs/benchmarks.md.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

from slimpajama_gui.core import data as data_mod  # noqa: E402
from slimpajama_gui.core import onnx_backend as onnx_mod  # noqa: E402
from slimpajama_gui.core.evaluate import predict  # noqa: E402
from slimpajama_gui.core.models import open_model  # noqa: E402

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=SST2)
    args = parser.parse_args()
    handle = open_model(args.teacher)
    model, tok = handle.load_model(), handle.load_tokenizer()
    spec = data_mod.DatasetSpec(
        train=str(args.data / "dev.tsv"),
        eval=str(args.data / "dev.tsv"),
        labels=["negative", "positive"],
    )
    ds = data_mod.load_dataset(spec)
    enc = data_mod.encode_split(ds.eval, tok, 128)

    def logits(m) -> np.ndarray:
        batches = data_mod.batches(
            enc, ds.eval.labels, 64, False, 0, tok.pad_token_id or 0, sort_by_length=True
        )
        return predict(m, batches).logits

    reference = logits(model)
    gold = np.asarray(ds.eval.labels)
    rows = [("PyTorch fp32 (reference)", reference, args.teacher.stat().st_size)]
    work = Path(tempfile.mkdtemp(prefix="onnx-parity-"))
    fp32 = work / "fp32.onnx"
    onnx_mod.export_onnx(model, fp32)
    rows.append(
        (
            "onnxruntime fp32",
            logits(onnx_mod.OnnxClassifier(onnx_mod.OrtRunner(fp32, threads=2))),
            fp32.stat().st_size,
        )
    )
    for per_channel in (True, False):
        q = work / f"int8-{'channel' if per_channel else 'tensor'}.onnx"
        onnx_mod.quantize_onnx(fp32, q, per_channel=per_channel)
        name = f"onnxruntime int8 per-{'channel' if per_channel else 'tensor'}"
        rows.append(
            (
                name,
                logits(onnx_mod.OnnxClassifier(onnx_mod.OrtRunner(q, threads=2))),
                q.stat().st_size,
            )
        )
    lines = [
        "## ONNX export: do the outputs match PyTorch? (compression issue)",
        "",
        f"Command: `python benchmarks/onnx_parity.py --teacher {args.teacher.name}`",
        "",
        f"Machine: {machine()}. All 872 SST-2 dev sentences, the fine-tuned teacher.",
        "",
        "| Model | Max abs logit difference vs PyTorch fp32 | Argmax agreement with PyTorch fp32 | Dev accuracy | .onnx size |",
        "|---|---|---|---|---|",
    ]
    for name, out, size in rows:
        diff = float(np.abs(out - reference).max())
        agree = float((out.argmax(1) == reference.argmax(1)).mean())
        acc = float((out.argmax(1) == gold).mean())
        size_text = "–" if name.startswith("PyTorch") else f"{size / 1e6:.1f} MB"
        lines.append(
            f"| {name} | {diff:.2e} | {100 * agree:.2f} % | {100 * acc:.2f} % | {size_text} |"
        )
    lines += [
        "",
        "The fp32 export is exact to float rounding (the stated bound is 1e-4). int8 changes the "
        "weights, so its agreement measures quantization, not the export.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("onnx-parity", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
