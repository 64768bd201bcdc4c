"""Safe reading of safetensors files and atomic writing of folders.

Every weight file the app opens goes through :func:`read_safetensors_header` before a
byte of tensor data is touched, so a damaged or hostile file is refused with a sentence
instead of crashing the ``safetensors`` Rust reader or allocating gigabytes.

Example:
    >>> header = read_safetensors_header(Path("model.safetensors"))  # doctest: +SKIP
    >>> header.tensors["embeddings.word_embeddings.weight"].shape
    (30522, 384)
"""

from __future__ import annotations

import json
import math
import os
import re
import shutil
import struct
import tempfile
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError

#: A header larger than this is refused outright (docs/reliability.md M1).
MAX_HEADER_BYTES = 100 * 1024 * 1024

#: Bytes per element of each dtype the safetensors format defines.
DTYPE_SIZES: dict[str, float] = {
    "BOOL": 1, "U8": 1, "I8": 1, "F8_E5M2": 1, "F8_E4M3": 1, "F8_E8M0": 1,
    "I16": 2, "U16": 2, "F16": 2, "BF16": 2,
    "I32": 4, "U32": 4, "F32": 4,
    "I64": 8, "U64": 8, "F64": 8,
    "F4": 0.5, "F6_E2M3": 0.75, "F6_E3M2": 0.75,
}  # fmt: skip

#: File suffixes that hold Python pickles; never loaded (docs/reliability.md M4/M5).
PICKLE_SUFFIXES = (".bin", ".pt", ".pth", ".ckpt", ".pkl", ".pickle")


@dataclass(frozen=True)
class TensorInfo:
    """One tensor as described by a safetensors header."""

    dtype: str
    shape: tuple[int, ...]
    begin: int
    end: int

    @property
    def numel(self) -> int:
        return math.prod(self.shape)


@dataclass(frozen=True)
class SafetensorsHeader:
    """The validated header of one ``.safetensors`` file."""

    path: Path
    tensors: dict[str, TensorInfo]
    metadata: dict[str, str] = field(default_factory=dict)
    file_size: int = 0


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of ``path`` without loading any tensor.

    Raises:
        UserError: the file is not a valid safetensors file, is incomplete, or its
            offsets overlap or point outside the file.
    """
    path = Path(path)
    name = path.name
    try:
        size = path.stat().st_size
        with path.open("rb") as fh:
            prefix = fh.read(8)
            if len(prefix) < 8:
                raise UserError(
                    f"not a valid safetensors file: {name} is only {size} bytes. "
                    "Copy the file again from its source."
                )
            (header_len,) = struct.unpack("<Q", prefix)
            if header_len > MAX_HEADER_BYTES or header_len > size - 8:
                raise UserError(
                    f"not a valid safetensors file: {name} declares a {header_len:,}-byte "
                    f"header but the file holds {size:,} bytes. Copy the file again or "
                    "re-save it with safetensors."
                )
            raw = fh.read(header_len)
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror}.") from exc

    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(
            f"not a valid safetensors file: the header of {name} is not JSON ({exc})."
        ) from exc

    metadata = header.pop("__metadata__", None) or {}
    data_size = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        try:
            dtype = entry["dtype"]
            shape = tuple(int(d) for d in entry["shape"])
            begin, end = (int(x) for x in entry["data_offsets"])
        except (KeyError, TypeError, ValueError) as exc:
            raise UserError(
                f"not a valid safetensors file: entry {key!r} in {name} is malformed."
            ) from exc
        if dtype not in DTYPE_SIZES or any(d < 0 for d in shape):
            raise UserError(
                f"not a valid safetensors file: entry {key!r} in {name} has dtype "
                f"{dtype!r} and shape {list(shape)}, which safetensors does not allow."
            )
        expected = math.ceil(math.prod(shape) * DTYPE_SIZES[dtype])
        if begin < 0 or end < begin or end - begin != expected:
            raise UserError(
                f"not a valid safetensors file: entry {key!r} in {name} has offsets "
                f"[{begin}, {end}] that do not match its shape {list(shape)}."
            )
        tensors[key] = TensorInfo(dtype, shape, begin, end)

    last_end = 0
    for key, info in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin < last_end:
            raise UserError(
                f"not a valid safetensors file: tensor {key!r} in {name} overlaps "
                "another tensor. The file is damaged or was crafted; it was not loaded."
            )
        last_end = info.end
    if last_end > data_size:
        raise UserError(
            f"file is incomplete: {name} should hold {last_end + 8 + header_len:,} bytes "
            f"but has {size:,}. The copy was probably interrupted; copy it again."
        )
    return SafetensorsHeader(path, tensors, dict(metadata), size)


def load_safetensors(path: Path, device: str = "cpu") -> dict:
    """Validate ``path`` and load its tensors (never pickle)."""
    from safetensors.torch import load_file

    read_safetensors_header(path)
    return load_file(str(path), device=device)


#: What a sentence about a damaged JSON file advises by default.
JSON_ADVICE = "fix it or copy the folder again."


def read_json(path: Path, *, missing: str | None = None, advice: str = JSON_ADVICE) -> Any:
    """The JSON value in ``path``; every failure is one sentence naming the file.

    UTF-8 with or without a byte-order mark is accepted (Windows editors write one).

    Args:
        path: the file.
        missing: the sentence when the file does not exist (default: "cannot read").
        advice: what to do, ending a sentence about an unreadable or damaged file.

    Raises:
        UserError: the file is missing or unreadable, not UTF-8, empty, or not JSON
            (line and column named).
    """
    path = Path(path)
    try:
        raw = path.read_bytes()
    except FileNotFoundError as exc:
        if missing is not None:
            raise UserError(missing) from None
        raise UserError(f"cannot read {path}: the file does not exist; {advice}") from exc
    except OSError as exc:
        raise UserError(f"cannot read {path}: {exc.strerror or exc}; {advice}") from exc
    try:
        text = raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        raise UserError(
            f"{path} is not UTF-8 text (byte {exc.start}); save it again as UTF-8 JSON, or {advice}"
        ) from exc
    if not text.strip():
        raise UserError(f"{path} is empty; {advice}")
    try:
        return json.loads(text)
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {advice}"
        ) from exc


def read_json_object(
    path: Path, *, missing: str | None = None, advice: str = JSON_ADVICE
) -> dict[str, Any]:
    """The JSON object in ``path`` (a config or tokenizer file), as :func:`read_json`.

    Raises:
        UserError: as :func:`read_json`, or the file does not hold an object.
    """
    data = read_json(path, missing=missing, advice=advice)
    if not isinstance(data, dict):
        raise UserError(f"{path} must hold a JSON object, not {type(data).__name__}; {advice}")
    return data


def refuse_pickle(path: Path) -> UserError:
    """The sentence for a weight file we will not open."""
    where = (
        f"{path.parent} holds pickle weights ({path.name})"
        if path.is_file()
        else (f"{path} holds pickle weights (e.g. pytorch_model.bin)")
    )
    return UserError(
        f"{where}; "
        "pickle files can run code when loaded, so SlimPajama Studio never opens them. "
        "Convert the model to safetensors in a trusted environment first, e.g. "
        "`AutoModel.from_pretrained(folder).save_pretrained(folder, safe_serialization=True)`."
    )


def no_weights_error(folder: Path, sentence: str) -> UserError:
    """The error for a folder without the safetensors weights we need: the pickle
    refusal when the folder holds pickle weights, so the user learns why, else
    ``sentence``."""
    pickles = sorted(p for p in Path(folder).iterdir() if p.suffix in PICKLE_SUFFIXES)
    return refuse_pickle(pickles[0]) if pickles else UserError(sentence)


# --------------------------------------------------------------------------- writing


def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    except OSError:
        pass
    finally:
        os.close(fd)


def _file_mode() -> int:
    """What a plain ``open(path, "w")`` would give (mkstemp files are private, 0600)."""
    umask = os.umask(0)
    os.umask(umask)
    return 0o666 & ~umask


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Write ``data`` to ``path`` so readers see the old or the new file, never half."""
    path = Path(path)
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        os.fchmod(fd, _file_mode())
        with os.fdopen(fd, "wb") as fh:
            fh.write(data)
            fh.flush()
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise


@contextmanager
def atomic_file(path: Path) -> Iterator[Path]:
    """A temporary path beside ``path`` for a writer that needs a file name (``onnx.save``,
    ``quantize_dynamic``); it replaces ``path`` only if the body succeeds.

    Example:
        >>> with atomic_file(Path("out/model.onnx")) as tmp:  # doctest: +SKIP
        ...     onnx.save(proto, str(tmp))
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # The suffix stays last: some writers pick the format from it.
    tmp = path.parent / f".{path.stem}.{uuid.uuid4().hex[:8]}.tmp{path.suffix}"
    try:
        yield tmp
        with open(tmp, "rb") as fh:
            os.fchmod(fh.fileno(), _file_mode())
            os.fsync(fh.fileno())
        os.replace(tmp, path)
        _fsync_dir(path.parent)
    finally:
        tmp.unlink(missing_ok=True)


def atomic_write_text(path: Path, text: str) -> None:
    atomic_write_bytes(path, text.encode("utf-8"))


def _fsync_tree(root: Path) -> None:
    mode = _file_mode()
    for dirpath, _dirs, files in os.walk(root):
        for f in files:
            with open(os.path.join(dirpath, f), "rb") as fh:
                os.fchmod(fh.fileno(), mode)  # some writers stage files as 0600
                os.fsync(fh.fileno())
        _fsync_dir(Path(dirpath))


@contextmanager
def atomic_dir(target: Path) -> Iterator[Path]:
    """Stage a folder beside ``target`` and swap it in only when complete.

    The body writes into the yielded staging folder. On success the staged folder
    replaces ``target`` (an old ``target`` is moved aside and then removed); on any
    exception the staging folder is deleted and ``target`` is untouched.

    Example:
        >>> with atomic_dir(Path("out/variant")) as tmp:  # doctest: +SKIP
        ...     model.save_pretrained(tmp)
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        yield staging
        _fsync_tree(staging)
        if target.exists():
            old = target.parent / f".{target.name}.old-{uuid.uuid4().hex[:8]}"
            os.replace(target, old)
            os.replace(staging, target)
            shutil.rmtree(old, ignore_errors=True)
        else:
            os.replace(staging, target)
        _fsync_dir(target.parent)
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# What the writers above leave behind when the process dies inside them (kill -9, a
# power cut, an app that quits while a job cannot stop): the names they stage under.
_STAGED_DIR = re.compile(r"\.(?P<name>.+)\.(?P<kind>staging|old)-[0-9a-f]{8}")
_STAGED_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?")


def recover_atomic_leftovers(folder: Path) -> list[Path]:
    """Finish what a killed :func:`atomic_dir` / ``atomic_write_*`` left in ``folder``.

    Afterwards every target in ``folder`` is the old complete copy or the new complete
    one. A staging folder or temporary file is removed (it was never swapped in); an
    ``.old-`` copy whose target is missing (killed between the two renames of
    :func:`atomic_dir`) is put back, any other ``.old-`` copy is removed. Sub-folders
    are not searched. Only call it while nobody writes in ``folder`` (hold its
    :class:`~slimpajama_gui.core.storage.locks.OutputLock`).

    Args:
        folder: where the atomic writes happened; missing is fine (nothing to do).

    Returns:
        The paths removed or restored, for the log.

    Raises:
        OSError: an ``.old-`` copy could not be put back.
    """
    folder = Path(folder)
    touched: list[Path] = []
    try:
        entries = sorted(folder.iterdir())
    except OSError:
        return touched
    for entry in entries:
        staged = _STAGED_DIR.fullmatch(entry.name)
        if staged and entry.is_dir() and not entry.is_symlink():
            target = folder / staged["name"]
            if staged["kind"] == "old" and not target.exists():
                os.replace(entry, target)
            else:
                shutil.rmtree(entry, ignore_errors=True)
            touched.append(entry)
        elif _STAGED_FILE.fullmatch(entry.name) and entry.is_file():
            entry.unlink(missing_ok=True)
            touched.append(entry)
    if touched:
        _fsync_dir(folder)
    return touched
