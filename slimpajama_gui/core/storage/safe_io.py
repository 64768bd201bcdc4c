"""Safe reading of model files: safetensors headers, JSON, links confined to their folder.

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
import shutil
import struct
from collections.abc import Iterable
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

#: Deeper JSON is refused: no model file nests so, and later readers recurse.
MAX_JSON_DEPTH = 64

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


def short_repr(value: Any, limit: int = 60) -> str:
    """``repr(value)`` for a sentence: escaped, and cut if a crafted value is huge."""
    if isinstance(value, str):
        return repr(value if len(value) <= limit else value[:limit] + "…")
    if isinstance(value, (dict, list)) and len(value) > 8:
        value = dict(list(value.items())[:8]) if isinstance(value, dict) else value[:8]
        text = repr(value)[:-1] + ", …" + repr(value)[-1]
    else:
        text = repr(value)
    return text if len(text) <= limit * 2 else text[: limit * 2] + "…"


_shown = short_repr


def _whole(value: Any) -> bool:
    return isinstance(value, int) and not isinstance(value, bool)


def read_safetensors_header(path: Path) -> SafetensorsHeader:
    """Read and validate the header of ``path`` without loading any tensor.

    The checks are the ``safetensors`` format's own: a JSON object of entries
    ``{"dtype", "shape", "data_offsets"}`` (plus an optional ``__metadata__`` object of
    strings) whose tensors tile the data section exactly, from its first byte to the
    file's last, with no gap, overlap or trailing byte. Any bytes give either a header
    or a :class:`UserError`; the file is refused when it is a symbolic link that leaves
    its folder (:func:`resolve_inside`).

    Raises:
        UserError: the file is not a valid safetensors file, is incomplete, or its
            offsets overlap, leave gaps or point outside the file.
    """
    given = Path(path)
    name = given.name
    path = resolve_inside(given)
    try:
        size = _regular_file(path, given).stat().st_size
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
        raise UserError(f"cannot read {path}: {exc.strerror or exc}.") from exc

    try:
        header = json.loads(raw.decode("utf-8"))
        if not isinstance(header, dict):
            raise ValueError("header is not a JSON object")
    except RecursionError:
        raise UserError(
            f"not a valid safetensors file: the header of {name} is nested too deeply "
            "to be a safetensors header. The file is damaged or was crafted; copy it again."
        ) from None
    except (UnicodeDecodeError, ValueError) as exc:
        raise UserError(
            f"not a valid safetensors file: the header of {name} is not JSON ({exc})."
        ) from exc

    metadata = header.pop("__metadata__", None)
    if metadata is None:
        metadata = {}
    if not isinstance(metadata, dict) or not all(isinstance(v, str) for v in metadata.values()):
        raise UserError(
            f"not a valid safetensors file: __metadata__ in the header of {name} must map "
            "names to strings. The file is damaged or was written by another tool; "
            "re-save it with safetensors."
        )
    data_size = size - 8 - header_len
    tensors: dict[str, TensorInfo] = {}
    for key, entry in header.items():
        dtype = entry.get("dtype") if isinstance(entry, dict) else None
        shape = entry.get("shape") if isinstance(entry, dict) else None
        offsets = entry.get("data_offsets") if isinstance(entry, dict) else None
        if (
            not isinstance(dtype, str)
            or not isinstance(shape, list)
            or not all(_whole(d) for d in shape)
            or not isinstance(offsets, list)
            or len(offsets) != 2
            or not all(_whole(x) for x in offsets)
        ):
            raise UserError(
                f"not a valid safetensors file: entry {_shown(key)} in {name} is malformed "
                "(it needs a dtype, a shape of whole numbers and two data_offsets)."
            )
        if dtype not in DTYPE_SIZES or any(d < 0 for d in shape):
            raise UserError(
                f"not a valid safetensors file: entry {_shown(key)} in {name} has dtype "
                f"{_shown(dtype)} and shape {shape[:8]}, which safetensors does not allow."
            )
        begin, end = offsets
        if begin < 0 or end < begin or end > data_size:
            if begin >= 0 and end >= begin:
                raise UserError(
                    f"file is incomplete: {name} should hold at least {end + 8 + header_len:,} "
                    f"bytes but has {size:,}. The copy was probably interrupted; copy it again."
                )
            raise UserError(
                f"not a valid safetensors file: entry {_shown(key)} in {name} has offsets "
                f"[{begin}, {end}] outside its data."
            )
        # Shapes are bounded by the file: a product larger than the data is refused
        # before it is computed in full.
        numel = 0 if 0 in shape else 1
        for d in shape if numel else ():
            numel *= d  # never falls: every d >= 1 here
            if numel > data_size * 8:
                numel = -1
                break
        expected = math.ceil(numel * DTYPE_SIZES[dtype]) if numel >= 0 else -1
        if end - begin != expected:
            raise UserError(
                f"not a valid safetensors file: entry {_shown(key)} in {name} has offsets "
                f"[{begin}, {end}] that do not match its shape {shape[:8]}."
            )
        tensors[key] = TensorInfo(dtype, tuple(shape), begin, end)

    # The tensors must tile the data section: what safetensors itself checks, so a file
    # passed here is never refused later by its loader.
    last_end = 0
    for key, info in sorted(tensors.items(), key=lambda kv: (kv[1].begin, kv[1].end)):
        if info.begin < last_end:
            raise UserError(
                f"not a valid safetensors file: tensor {_shown(key)} in {name} overlaps "
                "another tensor. The file is damaged or was crafted; it was not loaded."
            )
        if info.begin > last_end:
            raise UserError(
                f"not a valid safetensors file: {name} has {info.begin - last_end:,} bytes "
                f"that belong to no tensor before {_shown(key)}. The file is damaged or was "
                "crafted; copy it again or re-save it with safetensors."
            )
        last_end = info.end
    if last_end != data_size:
        raise UserError(
            f"not a valid safetensors file: {name} has {data_size - last_end:,} bytes after "
            "its last tensor that belong to no tensor. The file is damaged or was crafted; "
            "copy it again or re-save it with safetensors."
        )
    return SafetensorsHeader(given, tensors, dict(metadata), size)


def load_safetensors(path: Path, device: str = "cpu") -> dict:
    """Validate ``path`` and load its tensors (never pickle).

    Raises:
        UserError: as :func:`read_safetensors_header`, or the tensors cannot be read
            (a dtype this PyTorch lacks, a read error).
    """
    from safetensors.torch import load_file

    header = read_safetensors_header(path)
    try:
        return load_file(str(resolve_inside(header.path)), device=device)
    except MemoryError:
        raise UserError(
            f"{header.path.name} does not fit in memory ({header.file_size:,} bytes); "
            "close other programs or use a machine with more memory."
        ) from None
    except Exception as exc:  # the Rust reader and torch raise several types
        raise UserError(
            f"cannot load {header.path.name}: {exc}. Copy the file again or re-save it "
            "with safetensors."
        ) from exc


# --------------------------------------------------------------------------- paths


def confinement_root(folder: Path) -> Path:
    """The resolved folder whose files a model folder may link to.

    The folder itself, except for a Hugging Face cache snapshot
    (``models--org--name/snapshots/<rev>``), whose files are links into the
    repository's own ``blobs`` folder; the repository folder is the root then.
    """
    folder = Path(folder).absolute()
    if folder.parent.name == "snapshots" and folder.parent.parent.name.startswith("models--"):
        return folder.parent.parent.resolve()
    return folder.resolve()


def resolve_inside(path: Path, folder: Path | None = None) -> Path:
    """``path`` resolved, refused when a symbolic link takes it outside ``folder``.

    Every model file the app reads or copies goes through here, so a link (``vocab.txt
    -> ~/.ssh/id_rsa``) never brings an outside file into the app or into a result.

    Args:
        path: a file of a model folder (it need not exist).
        folder: the folder it belongs to; ``path``'s own folder by default. A Hugging
            Face cache snapshot may link into its repository (:func:`confinement_root`).

    Returns:
        The resolved path.

    Raises:
        UserError: the path resolves outside the folder (the sentence names the file
            and where it points).
    """
    path = Path(path).absolute()
    folder = Path(folder).absolute() if folder is not None else path.parent
    root = confinement_root(folder)
    try:
        real = path.resolve()
    except (OSError, RuntimeError) as exc:  # a link loop
        raise UserError(
            f"{path.name} in {folder} is a symbolic link that cannot be followed ({exc}); "
            "replace it with the file itself."
        ) from exc
    if real != root and not real.is_relative_to(root):
        raise UserError(
            f"{path.name} in {folder} is a symbolic link to {real}, outside the model "
            "folder; SlimPajama Studio reads and copies model files only from inside the "
            "folder it is given. Put the file itself in the folder if you trust it."
        )
    return real


def _regular_file(real: Path, given: Path) -> Path:
    """``real`` if it is a regular file or missing; a FIFO or device would block a read."""
    if real.exists() and not real.is_file():
        raise UserError(
            f"{given} is not a regular file (a folder, pipe or device); put the file "
            "itself there or copy the folder again."
        )
    return real


def copy_model_files(src: Path, dst: Path, names: Iterable[str]) -> list[str]:
    """Copy the files ``names`` that ``src`` holds into ``dst``; only regular files
    inside ``src`` (:func:`resolve_inside`), never what a link points to elsewhere.

    Returns:
        The names copied.

    Raises:
        UserError: one of them is a link that leaves ``src``.
    """
    src, dst = Path(src), Path(dst)
    copied = []
    for name in names:
        if not os.path.lexists(src / name):
            continue
        real = resolve_inside(src / name, src)
        if not real.is_file():  # a folder, a FIFO, a device or a dangling link
            continue
        shutil.copyfile(real, dst / name)
        copied.append(name)
    return copied


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
        raw = _regular_file(resolve_inside(path), path).read_bytes()
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
    too_deep = False
    try:
        data = json.loads(text)
    except RecursionError:
        too_deep = True
    except json.JSONDecodeError as exc:
        raise UserError(
            f"{path} is not valid JSON (line {exc.lineno}, column {exc.colno}: {exc.msg}); {advice}"
        ) from exc
    except ValueError as exc:  # a number too long to convert
        raise UserError(f"{path} is not usable JSON ({exc}); {advice}") from exc
    if too_deep or _depth_over(data, MAX_JSON_DEPTH):
        raise UserError(
            f"{path} is nested more than {MAX_JSON_DEPTH} levels deep, which no model or "
            f"tokenizer file is; {advice}"
        )
    return data


def _depth_over(value: Any, limit: int) -> bool:
    """Whether ``value`` nests lists/objects deeper than ``limit`` (without recursion)."""
    stack = [(value, 1)]
    while stack:
        item, depth = stack.pop()
        children = (
            item.values() if isinstance(item, dict) else item if isinstance(item, list) else ()
        )
        for child in children:
            if isinstance(child, (dict, list)):
                if depth + 1 > limit:
                    return True
                stack.append((child, depth + 1))
    return False


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
