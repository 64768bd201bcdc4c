"""What a saved variant holds: :class:`VariantRecord`, its ``slimpajama.json``.

A variant is a model folder a job saved (``OUTPUT/NN-step``). Beside the weights and the
tokenizer it holds ``slimpajama.json`` (this record: recipe, step, parent, labels,
metrics, sizes, technique details), ``README.md`` (the model card, written from the
record) and, once an evaluate step ran on it, ``predictions-<split>.npz`` (the logits,
gold labels and row order of that step, so Compare need not run the models again).

This module is the one place that defines those files; the pipeline writes them through
it and Compare, Playground, the catalog and the CLI read them through it. It sits in the
storage layer (it imports no torch and nothing above it) so every layer may read a
variant.

Example:
    >>> record = VariantRecord.read(Path("out/sst2-small/01-finetune"))  # doctest: +SKIP
    >>> record.accuracy, record.benchmark.get("latency_p50_ms")
    (0.894, 4.2)
"""

from __future__ import annotations

import io
import json
import math
import os
from collections.abc import Iterable
from dataclasses import dataclass, field, fields
from datetime import datetime, timezone
from pathlib import Path
from typing import Any

import numpy as np

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.storage.atomic import atomic_write_bytes, atomic_write_text, same_or_inside
from slimpajama_gui.core.storage.safe_io import read_json

#: The record's file inside a variant folder; its presence marks a saved variant.
VARIANT_FILE = "slimpajama.json"
FORMAT = "slimpajama-result"
#: 1: the first layout (``recipe_base_dir``); 2: ``recipe_dir`` and ``predictions``.
VERSION = 2

#: Keys of a version-1 file that have another name now.
_RENAMED_V1 = {"recipe_base_dir": "recipe_dir"}


def predictions_file(split: str) -> str:
    """The sidecar file name of an evaluate step's predictions on ``split``."""
    return f"predictions-{split}.npz"


@dataclass
class StoredPredictions:
    """An evaluate step's outputs on one split, in the split's row order.

    ``logits`` is (N, C) float32 with columns in the record's ``label_names`` order,
    ``labels`` (N,) int64 gold classes in the same numbering, ``rows`` (N,) int64 the
    row index of each line in the split (0..N-1 today; kept so a subset can be stored).
    """

    logits: np.ndarray
    labels: np.ndarray
    rows: np.ndarray


@dataclass
class VariantRecord:
    """The contents of a variant's ``slimpajama.json``.

    Sizes are bytes, latencies milliseconds, accuracies fractions (0..1). ``metrics``
    has ``training`` (figures of the step that made the variant), one entry per
    evaluated split (``eval``, ``test``: an evaluation report) and ``benchmark``.
    Technique details (``prune``, ``distill``, ``quantization``, ``onnx``) are the
    sections that step writes, ``None`` for the others.
    """

    job_id: int | None = None
    step_index: int | None = None
    step: dict[str, Any] | None = None
    parent: str | None = None
    source_model: str | None = None
    label_names: list[str] = field(default_factory=list)
    weights_format: str = "fp32"
    parameters: int | None = None
    nonzero_parameters: int | None = None
    recipe: dict[str, Any] | None = None
    #: The folder the recipe's relative paths are read from (absolute).
    recipe_dir: str | None = None
    metrics: dict[str, Any] = field(default_factory=dict)
    #: Split → sidecar file name (relative to the variant folder) of its predictions.
    predictions: dict[str, str] = field(default_factory=dict)
    prune: dict[str, Any] | None = None
    distill: dict[str, Any] | None = None
    quantization: dict[str, Any] | None = None
    onnx: dict[str, Any] | None = None
    app_version: str = ""
    created_at: str = field(
        default_factory=lambda: datetime.now(timezone.utc).isoformat(timespec="seconds")
    )
    version: int = VERSION

    # ---------------------------------------------------------------- JSON

    def to_json(self) -> dict[str, Any]:
        """Plain values in a stable key order (the file's layout)."""
        data: dict[str, Any] = {"format": FORMAT}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in _OPTIONAL_SECTIONS and value is None:
                continue
            data[f.name] = value
        data["version"] = VERSION
        return data

    @classmethod
    def from_json(cls, data: dict[str, Any], source: str = "slimpajama.json") -> VariantRecord:
        """Build a record from plain values; older versions are read.

        Raises:
            UserError: ``data`` is not an object, names another format, comes from a
                newer app, or holds a key this version does not know (named).
        """
        if not isinstance(data, dict):
            raise UserError(f"{source} must hold a JSON object, not {type(data).__name__}.")
        data = dict(data)
        fmt = data.pop("format", FORMAT)
        if fmt != FORMAT:
            raise UserError(f"{source} is not a SlimPajama variant record (format {fmt!r}).")
        version = data.get("version", 1)
        if not isinstance(version, int) or version > VERSION:
            raise UserError(
                f"{source} was written by a newer SlimPajama Studio (record version "
                f"{version}; this app reads up to {VERSION}); update the app."
            )
        if version < 2:
            for old, new in _RENAMED_V1.items():
                if old in data:
                    data[new] = data.pop(old)
        known = {f.name for f in fields(cls)}
        for key in data:
            if key not in known:
                raise UserError(f"{source}: unknown key '{key}' (this app reads {sorted(known)}).")
        record = cls(**data)
        record.version = VERSION
        record.label_names = [str(x) for x in record.label_names or []]
        record.metrics = record.metrics if isinstance(record.metrics, dict) else {}
        record.predictions = record.predictions if isinstance(record.predictions, dict) else {}
        return record

    @classmethod
    def read(cls, folder: Path | str) -> VariantRecord:
        """The record of the variant in ``folder``.

        Raises:
            UserError: the file is missing (the folder was moved or deleted), cannot be
                read, is not JSON, or fails :meth:`from_json`.
        """
        path = Path(folder) / VARIANT_FILE
        data = read_json(
            path,
            missing=f"{path.parent} has no {VARIANT_FILE} (the folder was moved or deleted)",
            advice="run the job again to save this variant anew.",
        )
        return cls.from_json(data, str(path))

    @classmethod
    def read_or_none(cls, folder: Path | str) -> VariantRecord | None:
        """Like :meth:`read`, ``None`` where there is no readable record."""
        try:
            return cls.read(folder)
        except UserError:
            return None

    def write(self, folder: Path | str) -> None:
        """Write ``slimpajama.json`` and the model card into ``folder`` atomically."""
        folder = Path(folder)
        atomic_write_text(folder / VARIANT_FILE, json.dumps(self.to_json(), indent=2) + "\n")
        atomic_write_text(folder / "README.md", self.model_card(folder.name))

    # ---------------------------------------------------------------- predictions

    def write_predictions(
        self, folder: Path | str, split: str, logits: np.ndarray, labels: np.ndarray
    ) -> None:
        """Store an evaluate step's outputs on ``split`` beside the record (atomically).

        The record names the file; call :meth:`write` afterwards to save that.
        """
        name = predictions_file(split)
        buffer = io.BytesIO()
        logits = np.asarray(logits, dtype=np.float32)
        np.savez(
            buffer,
            logits=logits,
            labels=np.asarray(labels, dtype=np.int64),
            rows=np.arange(len(logits), dtype=np.int64),
        )
        atomic_write_bytes(Path(folder) / name, buffer.getvalue())
        self.predictions[split] = name

    def read_predictions(self, folder: Path | str, split: str = "eval") -> StoredPredictions | None:
        """The stored predictions on ``split``; ``None`` when there are none or the file
        cannot be read (the caller then computes them)."""
        name = self.predictions.get(split)
        if not name or Path(name).name != name:  # a bare file name, nothing else
            return None
        try:
            with np.load(Path(folder) / name, allow_pickle=False) as data:
                stored = StoredPredictions(
                    data["logits"].astype(np.float32),
                    data["labels"].astype(np.int64),
                    data["rows"].astype(np.int64),
                )
        except (OSError, ValueError, KeyError):
            return None
        n = len(stored.labels)
        if stored.logits.ndim != 2 or len(stored.logits) != n or len(stored.rows) != n:
            return None
        order = np.argsort(stored.rows, kind="stable")
        return StoredPredictions(stored.logits[order], stored.labels[order], stored.rows[order])

    # ---------------------------------------------------------------- figures

    @property
    def evaluation(self) -> dict[str, Any]:
        """The report of the evaluate step on ``eval`` (empty if none ran)."""
        value = self.metrics.get("eval")
        return value if isinstance(value, dict) else {}

    @property
    def benchmark(self) -> dict[str, Any]:
        """The benchmark step's figures (empty if none ran)."""
        value = self.metrics.get("benchmark")
        return value if isinstance(value, dict) else {}

    @property
    def accuracy(self) -> float | None:
        """Eval accuracy (0..1): the evaluate step's, else the one measured at save time."""
        value = finite_number(self.evaluation.get("accuracy"))
        if value is None:
            training = self.metrics.get("training")
            value = (
                finite_number(training.get("eval_accuracy")) if isinstance(training, dict) else None
            )
        return value

    @property
    def step_type(self) -> str:
        return str(self.step.get("type", "")) if isinstance(self.step, dict) else ""

    @property
    def int8_arithmetic(self) -> str:
        """For int8 variants: the CPU arithmetic its figures were measured with."""
        for key in ("quantization", "onnx"):
            section = getattr(self, key)
            if not isinstance(section, dict):
                continue
            # An ONNX file's figures are ONNX Runtime's; on x86 without VNNI its 8-bit
            # products are clipped, whatever arithmetic the file was made to reproduce.
            note = _CLIPPED if key == "onnx" and section.get("ort_saturates") is True else ""
            path = section.get("int8_path")
            if isinstance(path, dict) and path.get("description"):
                return str(path["description"]) + note
            bits = section.get("activation_bits")
            if key == "onnx" and isinstance(bits, int):
                return f"ONNX Runtime, {bits}-bit activations{note}"
        return ""

    def model_card(self, folder_name: str) -> str:
        """The ``README.md`` text of the variant (Markdown)."""
        metrics = self.metrics
        step = self.step_type or "source"
        lines = [
            f"# {folder_name}",
            "",
            f"A text classifier made by SlimPajama Studio {self.app_version} from "
            f"`{self.source_model}` (job {self.job_id}, step "
            f"{(self.step_index or 0) + 1}: {step}).",
            "",
            f"- Labels: {', '.join(self.label_names)}",
            f"- Parameters: {self.parameters or 0:,} (non-zero {self.nonzero_parameters or 0:,})",
            f"- Weights: {self.weights_format}, safetensors",
        ]
        for split in ("eval", "test"):
            if split in metrics:
                m = metrics[split]
                lines.append(
                    f"- {split} accuracy: {100 * m['accuracy']:.2f} % "
                    f"(macro-F1 {100 * m['macro_f1']:.2f}, n={m['n']})"
                )
        if "benchmark" in metrics:
            b = metrics["benchmark"]
            lines.append(
                f"- Latency (batch 1, {b['threads']} threads, {b['backend']}): p50 "
                f"{b['latency_p50_ms']:.2f} ms, p95 {b['latency_p95_ms']:.2f} ms; throughput "
                f"{b['throughput_per_s']:.0f}/s at batch {b['throughput_batch']}"
            )
        lines += [
            "",
            'Load it with SlimPajama Studio (`slimpajama predict FOLDER "text"`) or in Python:',
            "",
            "```python",
            "from slimpajama_gui.core.model.encoder import EncoderClassifier",
            "model = EncoderClassifier.from_pretrained(FOLDER)",
            "```",
            "",
            f"`{VARIANT_FILE}` beside this file holds the recipe, the metrics and the parent "
            "model.",
            "",
        ]
        return "\n".join(lines)


_OPTIONAL_SECTIONS = ("prune", "distill", "quantization", "onnx")


#: Added to an ONNX variant's int8 arithmetic when ONNX Runtime clipped its products.
_CLIPPED = "; ONNX Runtime clipped its 8-bit products (x86 without VNNI)"


def finite_number(value: Any) -> float | None:
    """``value`` as a float when it is a finite number (JSON may hold anything)."""
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number if math.isfinite(number) else None


def is_variant_folder(folder: Path | str) -> bool:
    """Whether ``folder`` holds a saved variant (its record file is there)."""
    return (Path(folder) / VARIANT_FILE).is_file()


def check_replaceable(target: Path | str, *, sources: Iterable[Path | str] = ()) -> None:
    """Refuse to save a variant as ``target`` where that would destroy what is not ours.

    docs/reliability.md O1, O2, F8: the app replaces only a folder it saved itself, which
    its readable record (:data:`VARIANT_FILE`) marks; a folder the user made under that
    name, a file or a link is left alone. And a source model is never replaced, nor any
    folder that holds one, however the paths are spelled (:func:`same_or_inside`).

    Raises:
        UserError: one sentence naming ``target`` and what to do.
    """
    target = Path(target)
    for source in sources:
        if same_or_inside(source, target) or same_or_inside(target, source):
            raise UserError(
                f"saving {target.name} in {target.parent} would overwrite the source model "
                f"{source}; set the recipe's output to a folder that neither holds nor is "
                "inside the source model."
            )
    if not os.path.lexists(target):
        return
    if target.is_symlink() or not target.is_dir():
        kind = "a link" if target.is_symlink() else "a file"
        raise UserError(
            f"{target} is {kind} that SlimPajama Studio did not make, so the job will not "
            f"replace it with its result {target.name}; move or rename it, or set the "
            "recipe's output to a new folder."
        )
    if VariantRecord.read_or_none(target) is None:
        raise UserError(
            f"{target} already exists and was not saved by SlimPajama Studio (it has no "
            f"readable {VARIANT_FILE}), so the job will not replace it; move or rename "
            "that folder, or set the recipe's output to a new folder."
        )
