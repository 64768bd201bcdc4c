"""Teacher logits kept on disk: computed once per (teacher, training data), reused after.

A distillation whose loss needs only the teacher's logits (no hidden-state or attention
term) reads them from ``<data dir>/cache/teacher-logits/<key>.npz`` instead of running
the teacher: the second distillation of the same teacher on the same rows (another
student, another temperature, a search's next trial) skips the teacher entirely.

The key (:func:`logits_key`) is a SHA-256 over what decides the logits: the teacher's
weights (every tensor's name, dtype, shape and bytes), the token ids the teacher reads
(which carry the tokenizer, ``max_length`` and the rows chosen) and whatever the caller
adds (the data file's hash). A changed weight, file, tokenizer or row count gives a
new key, so a stale file is never read. Files are numpy ``.npz`` read with
``allow_pickle=False`` and written atomically.
"""

from __future__ import annotations

import hashlib
import io
import logging
from collections.abc import Mapping, Sequence
from pathlib import Path

import numpy as np
import torch
from torch import nn

from slimpajama_gui.core.paths import data_dir
from slimpajama_gui.core.storage.atomic import atomic_write_bytes

log = logging.getLogger(__name__)

__all__ = [
    "file_sha256",
    "load_logits",
    "logits_key",
    "logits_path",
    "save_logits",
    "weights_sha256",
]

#: Bumped when the file layout or the key's recipe changes (old files are then unused).
FORMAT = 1


def weights_sha256(model: nn.Module) -> str:
    """SHA-256 of a model's state dict: names, dtypes, shapes and bytes, in name order."""
    digest = hashlib.sha256()
    for name, tensor in sorted(model.state_dict().items()):
        t = tensor.detach().cpu().contiguous()
        digest.update(f"{name}|{t.dtype}|{tuple(t.shape)}|".encode())
        digest.update(t.view(torch.uint8).numpy().tobytes() if t.numel() else b"")
    return digest.hexdigest()


def file_sha256(path: str | Path, chunk: int = 1 << 20) -> str:
    """SHA-256 of a file's bytes (raises OSError when it cannot be read)."""
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        while block := fh.read(chunk):
            digest.update(block)
    return digest.hexdigest()


def logits_key(
    teacher: nn.Module,
    input_ids: Sequence[Sequence[int]],
    token_type_ids: Sequence[Sequence[int]] | None = None,
    *,
    extra: Mapping[str, object] | None = None,
) -> str:
    """The cache key of the teacher's logits on these token ids (64 hex digits)."""
    digest = hashlib.sha256(f"teacher-logits v{FORMAT}\n".encode())
    digest.update(weights_sha256(teacher).encode())
    digest.update(f"rows={len(input_ids)}\n".encode())
    for ids in input_ids:
        digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    if token_type_ids is not None:
        digest.update(b"types\n")
        for ids in token_type_ids:
            digest.update(np.asarray(ids, dtype=np.int64).tobytes() + b"|")
    for name, value in sorted((extra or {}).items()):
        digest.update(f"{name}={value}\n".encode())
    return digest.hexdigest()


def logits_path(key: str, root: Path | None = None) -> Path:
    """Where the logits of ``key`` live: ``<data dir>/cache/teacher-logits/<key>.npz``."""
    folder = (root if root is not None else data_dir() / "cache") / "teacher-logits"
    return folder / f"{key}.npz"


def save_logits(path: Path, logits: torch.Tensor) -> None:
    """Write ``logits`` (N, K) float32, row i = dataset row i, atomically to ``path``."""
    path.parent.mkdir(parents=True, exist_ok=True)
    buf = io.BytesIO()
    np.savez(buf, logits=logits.detach().cpu().float().numpy(), format=np.int64(FORMAT))
    atomic_write_bytes(path, buf.getvalue())


def load_logits(path: Path, rows: int, num_labels: int) -> torch.Tensor | None:
    """The (rows, num_labels) float32 logits at ``path``; None when absent or unusable.

    A file of another shape or format, or one that does not read (truncated, not an
    npz), is ignored with a log line: the teacher then runs and the file is rewritten.
    """
    if not path.is_file():
        return None
    try:
        with np.load(path, allow_pickle=False) as data:
            logits = np.asarray(data["logits"], dtype=np.float32)
            fmt = int(data["format"])
    except (OSError, ValueError, KeyError) as exc:
        log.warning("Ignoring the teacher-logit cache %s: %s", path, exc)
        return None
    if fmt != FORMAT or logits.shape != (rows, num_labels) or not np.isfinite(logits).all():
        log.warning("Ignoring the teacher-logit cache %s: shape %s", path, logits.shape)
        return None
    return torch.from_numpy(logits.copy())
