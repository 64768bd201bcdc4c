"""Do ONNX variants predict what the PyTorch model predicts? Measured on SST-2 dev.

    .venv/bin/python benchmarks/onnx_parity.py --teacher RESULT_FOLDER

Exports the teacher to ONNX (fp32, fused for onnxruntime as the app writes it) and to
onnxruntime int8 (per-channel and per-tensor),
quantizes it with PyTorch (dynamic int8) and exports that int8 model to ONNX as it is,
runs all 872 dev sentences through each, one at a time (batch 1, as the Playground and
the latency benchmark run them), and reports the largest logit difference and the
argmax agreement with the PyTorch model each one comes from. Writes the "onnx-parity"
section of docs/benchmarks.md.
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
from slimpajama_gui.core.quantize import quantize_model  # noqa: E402

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
        # Batch 1: with padding, a dynamic int8 layer's activation range also covers the
        # pad positions, which then differ between two runtimes and blur the comparison.
        batches = data_mod.batches(enc, ds.eval.labels, 1, False, 0, tok.pad_token_id or 0)
        return predict(m, batches).logits

    def ort(path: Path) -> np.ndarray:
        return logits(onnx_mod.OnnxClassifier(onnx_mod.OrtRunner(path, threads=2)))

    reference = logits(model)
    gold = np.asarray(ds.eval.labels)
    fp32_name = "PyTorch fp32"
    rows = [(fp32_name, fp32_name, reference, None)]
    work = Path(tempfile.mkdtemp(prefix="onnx-parity-"))
    # What the app writes: the export fused by ONNX Runtime's optimizer, then int8.
    fp32 = onnx_mod.export_and_quantize(model, work / "fp32", quantize=False).path
    rows.append(("onnxruntime fp32 (fused export)", fp32_name, ort(fp32), fp32.stat().st_size))
    for per_channel in (True, False):
        q = work / f"int8-{'channel' if per_channel else 'tensor'}.onnx"
        onnx_mod.quantize_onnx(fp32, q, per_channel=per_channel)
        name = f"onnxruntime int8 per-{'channel' if per_channel else 'tensor'} (quantize_dynamic)"
        rows.append((name, fp32_name, ort(q), q.stat().st_size))
    int8_name = "PyTorch int8 (dynamic, per-channel, int8 embeddings)"
    pytorch_int8 = quantize_model(model, "dynamic_int8").model
    rows.append((int8_name, fp32_name, logits(pytorch_int8), None))
    exported = onnx_mod.export_and_quantize(pytorch_int8, work / "pytorch-int8")
    rows.append(
        (
            "onnxruntime: the PyTorch int8 model exported",
            int8_name,
            ort(exported.path),
            exported.size_bytes,
        )
    )
    by_name = {name: out for name, _, out, _ in rows}
    lines = [
        "## ONNX export: do the outputs match PyTorch? (compression issue)",
        "",
        f"Command: `python benchmarks/onnx_parity.py --teacher {args.teacher.name}`",
        "",
        f"Machine: {machine()}. All 872 SST-2 dev sentences, one at a time (batch 1), the "
        "fine-tuned teacher. Each ONNX model is compared with the PyTorch model it was made from.",
        "",
        "| Model | Compared with | Max abs logit difference | Argmax agreement | Dev accuracy | .onnx size |",
        "|---|---|---|---|---|---|",
    ]
    for name, against, out, size in rows:
        base = by_name[against]
        diff = float(np.abs(out - base).max())
        agree = float((out.argmax(1) == base.argmax(1)).mean())
        acc = float((out.argmax(1) == gold).mean())
        size_text = "–" if size is None else f"{size / 1e6:.1f} MB"
        lines.append(
            f"| {name} | {against if against != name else '–'} | {diff:.2e} | "
            f"{100 * agree:.2f} % | {100 * acc:.2f} % | {size_text} |"
        )
    lines += [
        "",
        "The fp32 export is exact to float rounding (the stated bound for float models is "
        "1e-4). The PyTorch int8 model exports to ONNX as the same int8 model (its int8 "
        "weights and scales, int8 embedding rows and int8 pooler/classifier), so ONNX Runtime "
        "reproduces PyTorch's int8 predictions. Quantizing the fp32 ONNX file with "
        "onnxruntime instead makes a different int8 model: its agreement with fp32 measures "
        "quantization, not the export, and is in line with PyTorch's own int8 against fp32.",
    ]
    body = "\n".join(lines)
    print(body)
    write_section("onnx-parity", body)
    return 0


if __name__ == "__main__":
    sys.exit(main())
