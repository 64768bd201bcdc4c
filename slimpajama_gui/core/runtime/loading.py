"""Open any saved model for running: float, quantized (PyTorch), ONNX or static embeddings.

:func:`open_model` checks a folder through the catalog (config, tokenizer and
safetensors headers, never the weights) and returns a :class:`ModelHandle`; its
``load_model`` reads the weights only then, refusing a model that would not fit in free
memory (docs/reliability.md M12). It sits above the techniques because a quantized
variant reloads through the quantization code and an ONNX variant through ONNX Runtime.
"""

from __future__ import annotations

import os
from pathlib import Path

from slimpajama_gui.core.errors import UserError
from slimpajama_gui.core.model.catalog import guess_source
from slimpajama_gui.core.model.inspection import (
    MEMORY_FACTOR,
    ONNX_FILE,
    ModelInfo,
    inspect_model,
    model_folder,
)
from slimpajama_gui.core.model.tokenizers import load_tokenizer
from slimpajama_gui.core.storage.safe_io import DTYPE_SIZES

# --------------------------------------------------------------------------- open


def estimate_memory_bytes(info: ModelInfo) -> int:
    """Bytes of memory loading ``info`` is expected to take (weights x MEMORY_FACTOR)."""
    weights = info.weights_bytes or int(info.parameters * DTYPE_SIZES.get(info.dtype, 4))
    return int(weights * MEMORY_FACTOR)


def _cgroup_available() -> int | None:
    """Memory left under a cgroup v2 limit (containers), if one is set."""
    try:
        limit = Path("/sys/fs/cgroup/memory.max").read_text().strip()
        if limit == "max":
            return None
        used = int(Path("/sys/fs/cgroup/memory.current").read_text().strip())
        return max(int(limit) - used, 0)
    except (OSError, ValueError):
        return None


def available_memory_bytes() -> int | None:
    """Free RAM in bytes (``MemAvailable``, capped by a cgroup limit); None if unknown."""
    available: int | None = None
    try:
        with open("/proc/meminfo") as fh:
            for line in fh:
                if line.startswith("MemAvailable:"):
                    available = int(line.split()[1]) * 1024
                    break
    except (OSError, ValueError, IndexError):
        available = None
    if available is None:
        try:
            available = os.sysconf("SC_AVPHYS_PAGES") * os.sysconf("SC_PAGE_SIZE")
        except (ValueError, OSError, AttributeError):
            available = None
    cgroup = _cgroup_available()
    if cgroup is not None:
        available = cgroup if available is None else min(available, cgroup)
    return available


def _fmt_bytes(n: int) -> str:
    for unit in ("bytes", "KB", "MB", "GB"):
        if n < 1024 or unit == "GB":
            return f"{n:,} {unit}" if unit == "bytes" else f"{n:,.1f} {unit}"
        n /= 1024
    return f"{n:,.1f} TB"  # pragma: no cover


def check_memory(info: ModelInfo, available_bytes: int | None = None, where: str = "RAM") -> None:
    """Refuse to load ``info`` if it would not fit in free memory (M12).

    Args:
        info: the model.
        available_bytes: free bytes; :func:`available_memory_bytes` by default. If the
            free memory cannot be measured, nothing is refused.
        where: what the memory is, for the message ("RAM", "GPU memory").

    Raises:
        UserError: the estimate exceeds the free memory.
    """
    if available_bytes is None:
        available_bytes = available_memory_bytes()
    if available_bytes is None:
        return
    need = estimate_memory_bytes(info)
    if need > available_bytes:
        raise UserError(
            f"{info.name} needs about {_fmt_bytes(need)} of {where} to load but only "
            f"{_fmt_bytes(available_bytes)} is free; close other programs or choose a "
            "smaller model."
        )


class ModelHandle:
    """An opened model: checked metadata now, weights and tokenizer on demand."""

    def __init__(self, info: ModelInfo) -> None:
        self.info = info

    def __repr__(self) -> str:
        return f"ModelHandle({self.info.name!r}, path={str(self.info.path)!r})"

    def load_model(
        self,
        num_labels: int | None = None,
        *,
        id2label: dict[int, str] | None = None,
        available_bytes: int | None = None,
        threads: int = 2,
    ):
        """Load the weights into an ``EncoderClassifier`` (safetensors only).

        Args:
            num_labels: classes for the classifier head; ``None`` keeps the saved head.
            id2label: names of those classes, saved with the model.
            threads: CPU threads of an ONNX variant's onnxruntime session.
            available_bytes: free memory to check against (default: measured).

        Raises:
            UserError: the model would not fit in memory, or the weights do not match
                the config.
        """
        check_memory(self.info, available_bytes)
        from slimpajama_gui.core.model.encoder import EncoderClassifier
        from slimpajama_gui.core.techniques.quantize.folders import is_quantized_folder, load_any
        from slimpajama_gui.core.techniques.static import StaticClassifier, is_static_folder

        if is_static_folder(self.info.path):
            # Token vectors + a linear head; the same model(...).logits call.
            model = StaticClassifier.from_folder(self.info.path)
            _check_static_labels(model, num_labels, self.info.name)
            return model
        if is_quantized_folder(self.info.path):
            return load_any(self.info.path, num_labels=num_labels, id2label=id2label)
        if (self.info.path / ONNX_FILE).is_file() and not (
            self.info.path / "model.safetensors"
        ).is_file():
            from slimpajama_gui.core.runtime.onnx_runner import OnnxClassifier, load_onnx_runner

            # Runs in onnxruntime; it has the same model(...).logits call as PyTorch.
            return OnnxClassifier(load_onnx_runner(self.info.path, threads=threads))

        return EncoderClassifier.from_pretrained(
            self.info.path, num_labels=num_labels, id2label=id2label
        )

    def load_tokenizer(self):
        """The model's tokenizer, from local files only and without model code.

        Raises:
            UserError: "tokenizer not found in FOLDER" with the reason.
        """
        return load_tokenizer(self.info.path)


def _check_static_labels(model, num_labels: int | None, name: str) -> None:
    """A static model's head cannot be replaced by a new one (it has no encoder to train)."""
    if num_labels is not None and num_labels != model.config.num_labels:
        raise UserError(
            f"{name} is a static-embedding model with a {model.config.num_labels}-class head "
            f"and the data has {num_labels} labels; it cannot be given a new head. Use data "
            "with its labels, or distill again from the transformer it was made from."
        )


def open_model(path: Path | str, source: str | None = None) -> ModelHandle:
    """Check the model at ``path`` and return a handle; weights load lazily.

    Args:
        path: a model folder (or a ``.safetensors`` / ``config.json`` file in it).
        source: where it came from; guessed when ``None`` (packaged, HF cache snapshot,
            a saved variant with ``slimpajama.json``, else a plain folder).

    Raises:
        UserError: see :func:`inspect_model`.
    """
    folder = model_folder(path)
    name = None
    if source is None:
        source, name = guess_source(folder)
    return ModelHandle(inspect_model(folder, source=source, name=name))
