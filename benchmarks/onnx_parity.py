"""Do ONNX variants predict what the PyTorch model predicts? Measured on SST-2 dev.

    .venv/bin/python benchmarks/onnx_parity.py --teacher RESULT_FOLDER

Exports the teacher to ONNX (fp32, fused for onnxruntime as the app writes it) and to
onnxruntime int8 (per-channel and per-tensor),
quantizes it with PyTorch (dynamic int8) and exports that int8 model to ONNX as it is,
runs all 872 dev sentences through each, one at a time (batch 1, as the Playground and
the latency benchmark run them), and reports the largest logit difference and the
argmax agreement with the PyTorch model each one comes from. Writes the "onnx-parity"
section of docs/benchmarks.md.

PyTorch's int8 arithmetic depends on the CPU (core/techniques/quantize/int8_path.py): the PyTorch int8 rows
are measured on this CPU's path and, on an x86 CPU with VNNI, once more in a child
process with SLIMPAJAMA_INT8_PATH=no-vnni (7-bit activations, as x86 CPUs without VNNI
compute); each row names its path.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import subprocess
import sys
import tempfile
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _report import machine, write_section  # noqa: E402

from slimpajama_gui.core import data as data_mod  # noqa: E402
from slimpajama_gui.core.runtime import onnx_runner  # noqa: E402
from slimpajama_gui.core.runtime.evaluate import predict  # noqa: E402
from slimpajama_gui.core.runtime.loading import open_model  # noqa: E402
from slimpajama_gui.core.storage.variant import VariantRecord  # noqa: E402
from slimpajama_gui.core.techniques import onnx_export  # noqa: E402
from slimpajama_gui.core.techniques.onnx_int8 import quantize_onnx  # noqa: E402
from slimpajama_gui.core.techniques.quantize import int8_path  # noqa: E402
from slimpajama_gui.core.techniques.quantize.methods import quantize_model  # noqa: E402

SST2 = Path(__file__).resolve().parents[2] / "shared" / "data" / "sst2"


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--teacher", type=Path, required=True)
    parser.add_argument("--data", type=Path, default=SST2)
    parser.add_argument(
        "--quick",
        action="store_true",
        help="32 dev sentences, print the table, leave docs/benchmarks.md alone",
    )
    parser.add_argument(
        "--int8-only",
        type=Path,
        help="(internal) measure only the PyTorch int8 rows and write them to this .npz",
    )
    args = parser.parse_args()
    handle = open_model(args.teacher)
    model, tok = handle.load_model(), handle.load_tokenizer()
    spec = data_mod.DatasetSpec(
        train=str(args.data / "dev.tsv"),
        eval=str(args.data / "dev.tsv"),
        labels=["negative", "positive"],
    )
    ds = data_mod.load_dataset(spec)
    if args.quick:
        ds.eval = dataclasses.replace(ds.eval, texts=ds.eval.texts[:32], labels=ds.eval.labels[:32])
    enc = data_mod.encode_split(ds.eval, tok, 128)

    def logits(m) -> np.ndarray:
        # Batch 1: with padding, a dynamic int8 layer's activation range also covers the
        # pad positions, which then differ between two runtimes and blur the comparison.
        batches = data_mod.batches(enc, ds.eval.labels, 1, False, 0, tok.pad_token_id or 0)
        return predict(m, batches).logits

    def ort(path: Path) -> np.ndarray:
        return logits(onnx_runner.OnnxClassifier(onnx_runner.OrtRunner(path, threads=2)))

    reference = logits(model)
    gold = np.asarray(ds.eval.labels)
    work = Path(tempfile.mkdtemp(prefix="onnx-parity-"))
    if args.int8_only:
        torch_int8, onnx_int8, size = _int8_rows(model, work, logits, ort)
        np.savez(args.int8_only, torch_int8=torch_int8, onnx_int8=onnx_int8, size=size)
        args.int8_only.with_suffix(".json").write_text(json.dumps(int8_path.current().to_dict()))
        return 0
    fp32_name = "PyTorch fp32"
    here = int8_path.current()
    ort_cpu = f"ONNX Runtime's kernels on this CPU ({'VNNI' if here.name == 'vnni' else here.name})"
    rows = [(fp32_name, fp32_name, reference, None, "–")]
    # What the app writes: the export fused by ONNX Runtime's optimizer, then int8.
    fp32 = onnx_export.export_and_quantize(model, work / "fp32", quantize=False).path
    rows.append(("onnxruntime fp32 (fused export)", fp32_name, ort(fp32), fp32.stat().st_size, "–"))
    for per_channel in (True, False):
        q = work / f"int8-{'channel' if per_channel else 'tensor'}.onnx"
        quantize_onnx(fp32, q, per_channel=per_channel)
        name = f"onnxruntime int8 per-{'channel' if per_channel else 'tensor'} (quantize_dynamic)"
        rows.append((name, fp32_name, ort(q), q.stat().st_size, ort_cpu))
    paths = [(here.to_dict(), *_int8_rows(model, work, logits, ort))]
    if here.name == "vnni":
        paths.append(_other_path(args, work))
    for path, torch_int8, onnx_int8, size in paths:
        described = path["description"]
        int8_name = f"PyTorch int8 per-channel, {path['activation_bits']}-bit activations"
        rows.append((int8_name, fp32_name, torch_int8, None, described))
        rows.append(
            ("onnxruntime: that PyTorch int8 model exported", int8_name, onnx_int8, size, described)
        )
    by_name = {name: out for name, _, out, _, _ in rows}
    lines = [
        "## ONNX export: do the outputs match PyTorch? (compression issue)",
        "",
        f"Command: `python benchmarks/onnx_parity.py --teacher {args.teacher.name}`",
        "",
        f"Machine: {machine()}. {len(gold)} SST-2 dev sentences, one at a time (batch 1). "
        f"Teacher: {_teacher_summary(args.teacher)}. Each ONNX model is compared with the "
        "PyTorch model it was made from.",
        "",
        "| Model | Compared with | int8 arithmetic | Max abs logit difference | Argmax agreement | Dev accuracy | .onnx size |",
        "|---|---|---|---|---|---|---|",
    ]
    for name, against, out, size, path in rows:
        base = by_name[against]
        diff = float(np.abs(out - base).max())
        agree = float((out.argmax(1) == base.argmax(1)).mean())
        acc = float((out.argmax(1) == gold).mean())
        size_text = "–" if size is None else f"{size / 1e6:.1f} MB"
        lines.append(
            f"| {name} | {against if against != name else '–'} | {path} | {diff:.2e} | "
            f"{100 * agree:.2f} % | {100 * acc:.2f} % | {size_text} |"
        )
    lines += [
        "",
        "The fp32 export is exact to float rounding (the stated bound for float models is "
        "1e-4). The PyTorch int8 model exports to ONNX as the same int8 model (its int8 "
        "weights and scales, int8 embedding rows and int8 pooler/classifier), with "
        "activations quantized as PyTorch quantizes them on the exporting CPU: 8 bits with "
        "VNNI, 7 bits without (each pair of rows above was made on the path it names). The "
        "integers are the same; the float parts (softmax, GELU, LayerNorm) round "
        "differently in the two runtimes, and a rounding that crosses a quantization step "
        "in a later layer moves the logits by more than float rounding would. Quantizing "
        "the fp32 ONNX file with onnxruntime instead makes a different int8 model: its "
        "agreement with fp32 measures quantization, not the export.",
    ]
    body = "\n".join(lines)
    print(body)
    if not args.quick:
        write_section("onnx-parity", body)
    return 0


def _teacher_summary(folder: Path) -> str:
    """How the teacher was trained, from its slimpajama.json (when it has one)."""
    record = VariantRecord.read_or_none(folder)
    if record is None or not record.step or not isinstance(record.recipe, dict):
        return f"`{folder.name}`"
    step, data = record.step, record.recipe.get("dataset")
    if not isinstance(data, dict):
        return f"`{folder.name}`"
    rows = data.get("max_rows")
    rows_text = f"{rows:,} train rows" if rows else "the whole train set"
    return f"`{folder.name}`, {step.get('type')} of {step.get('epochs')} epoch(s) on {rows_text}"


def _int8_rows(model, work: Path, logits, ort) -> tuple[np.ndarray, np.ndarray, int]:
    """PyTorch int8 logits, its ONNX export's logits and the .onnx size, on this path."""
    pytorch_int8 = quantize_model(model, "dynamic_int8").model
    exported = onnx_export.export_and_quantize(pytorch_int8, work / "pytorch-int8")
    return logits(pytorch_int8), ort(exported.path), exported.size_bytes


def _other_path(args, work: Path) -> tuple[dict, np.ndarray, np.ndarray, int]:
    """The same rows computed as an x86 CPU without VNNI does, in a child process
    (fbgemm picks its kernels once per process)."""
    out = work / "no-vnni.npz"
    env = dict(os.environ, SLIMPAJAMA_INT8_PATH="no-vnni")
    cmd = [sys.executable, __file__, "--teacher", str(args.teacher), "--data", str(args.data)]
    if args.quick:
        cmd.append("--quick")
    subprocess.run([*cmd, "--int8-only", str(out)], check=True, env=env)
    saved = np.load(out)
    path = json.loads(out.with_suffix(".json").read_text())
    return path, saved["torch_int8"], saved["onnx_int8"], int(saved["size"])


if __name__ == "__main__":
    sys.exit(main())
