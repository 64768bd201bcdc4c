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

import ctypes
import errno
import functools
import json
import math
import os
import re
import shutil
import signal
import struct
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterable, Iterator
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


def same_or_inside(path: Path | str, folder: Path | str) -> bool:
    """Whether ``path`` is ``folder`` or lies inside it, however the two are spelled.

    Both are resolved first (links, ``..``), then compared by name and, for every
    existing folder on ``path``'s way up, by identity (device and inode), so a second
    spelling of the same folder (another case on a case-insensitive disk, a bind mount)
    is caught too. Nothing needs to exist.
    """
    path, folder = Path(path).expanduser().resolve(), Path(folder).expanduser().resolve()
    if path == folder or path.is_relative_to(folder):
        return True
    try:
        identity = folder.stat()
    except OSError:
        return False
    for part in (path, *path.parents):
        try:
            if os.path.samestat(part.stat(), identity):
                return True
        except OSError:
            continue
    return False


@contextmanager
def deferred_interrupt() -> Iterator[None]:
    """Hold back Ctrl+C (SIGINT) until the block ends, then deliver it.

    For the few lines that move a finished output into place and record it: a
    KeyboardInterrupt between them would leave the disk and the history saying different
    things (docs/reliability.md F4). Only the main thread receives signals, so elsewhere
    (the GUI's job thread) this does nothing.
    """
    if threading.current_thread() is not threading.main_thread():
        yield
        return
    caught: list[tuple[int, Any]] = []
    previous = signal.signal(signal.SIGINT, lambda signum, frame: caught.append((signum, frame)))
    try:
        yield
    finally:
        signal.signal(signal.SIGINT, previous)
        if caught:
            if callable(previous):
                previous(*caught[0])
            elif previous == signal.SIG_DFL:
                raise KeyboardInterrupt


_RENAME_EXCHANGE = 2  # linux/fs.h
_AT_FDCWD = -100


def _exchange(a: Path, b: Path) -> bool:
    """Swap the names ``a`` and ``b`` in one step (Linux ``renameat2(RENAME_EXCHANGE)``).

    Returns False, having changed nothing, where the system or the file system cannot.
    """
    renameat2 = _renameat2()
    if renameat2 is None:
        return False
    if renameat2(_AT_FDCWD, os.fsencode(a), _AT_FDCWD, os.fsencode(b), _RENAME_EXCHANGE) == 0:
        return True
    err = ctypes.get_errno()
    if err in (errno.EINVAL, errno.ENOSYS, errno.ENOTSUP, errno.EOPNOTSUPP, errno.EXDEV):
        return False  # e.g. an older kernel, a FUSE or network file system
    raise OSError(err, os.strerror(err), str(b))


@functools.cache
def _renameat2() -> Any:
    if not sys.platform.startswith("linux"):
        return None
    try:
        fn = ctypes.CDLL(None, use_errno=True).renameat2  # glibc 2.28+, musl 1.2.3+
    except (OSError, AttributeError):
        return None
    fn.argtypes = [ctypes.c_int, ctypes.c_char_p, ctypes.c_int, ctypes.c_char_p, ctypes.c_uint]
    fn.restype = ctypes.c_int
    return fn


def _swap_in(staging: Path, target: Path) -> None:
    """Move the complete folder ``staging`` to ``target``, replacing what is there.

    docs/reliability.md F4/O3: at every instant ``target`` names the previous folder or
    the new one, or a start of the app puts the previous one back
    (:func:`recover_atomic_leftovers`). Where Linux offers it, one
    ``renameat2(RENAME_EXCHANGE)`` swaps the two names, so there is no instant without
    ``target`` at all; the previous folder is then under the staging name and removed.
    Elsewhere two renames are needed (``target`` → ``.NAME.old-X``, staging → ``target``);
    the ``.old-`` name itself is the journal: it names the target it must return to if a
    kill falls between them, which the recovery at start does. A journal file would add
    a third write to get wrong; the exchange, where it exists, needs none.
    """
    parent, tag = target.parent, uuid.uuid4().hex[:8]
    if not os.path.lexists(target):
        os.rename(staging, target)
    elif _exchange(staging, target):
        shutil.rmtree(staging, ignore_errors=True)  # now the previous copy
    else:
        old = parent / f".{target.name}.old-{tag}"
        os.replace(target, old)
        try:
            os.replace(staging, target)
        except BaseException:
            os.replace(old, target)
            raise
        # Renamed before it is emptied, so an ``.old-`` copy is always whole: the
        # recovery may then put one back without looking inside.
        trash = parent / f".{target.name}.trash-{tag}"
        try:
            os.replace(old, trash)
            shutil.rmtree(trash, ignore_errors=True)
        except OSError:
            pass  # the new folder is in place; the recovery at start removes the old

    _fsync_dir(parent)


def write_error(target: Path, exc: OSError, *, replaced: bool) -> UserError:
    """The sentence for a save into ``target`` that failed with ``exc`` (F2)."""
    reason = exc.strerror or str(exc)
    if exc.errno in (errno.ENOSPC, getattr(errno, "EDQUOT", errno.ENOSPC), errno.EFBIG):
        advice = (
            f"free space on the disk that holds {target.parent} (or choose an output "
            "folder on another disk) and run the job again"
        )
    elif exc.errno in (errno.EACCES, errno.EPERM, errno.EROFS):
        advice = f"make {target.parent} writable or choose another output folder"
    else:
        advice = "check the disk and the folder, then run the job again"
    kept = f"the previous {target.name} is unchanged" if replaced else "nothing was written"
    return UserError(f"could not save {target}: {reason}; {kept}. To go on, {advice}.")


@contextmanager
def atomic_dir(
    target: Path, *, check_target: Callable[[Path], None] | None = None
) -> Iterator[Path]:
    """Stage a folder beside ``target`` and swap it in only when complete.

    The body writes into the yielded staging folder. On success the staged folder
    replaces ``target`` (:func:`_swap_in`); on any exception the staging folder is
    deleted and ``target`` is untouched.

    Args:
        target: the folder to write.
        check_target: called with ``target`` before staging and again just before the
            swap, when ``target`` may have appeared meanwhile; it raises
            :class:`UserError` for a ``target`` that must not be replaced (docs/
            reliability.md O1: a folder the app did not write, a source model).

    Raises:
        UserError: ``check_target`` refused, or writing failed (disk full, no right
            to write: :func:`write_error`); ``target`` is as it was.

    Example:
        >>> with atomic_dir(Path("out/variant")) as tmp:  # doctest: +SKIP
        ...     model.save_pretrained(tmp)
    """
    target = Path(target).absolute()
    target.parent.mkdir(parents=True, exist_ok=True)
    if check_target is not None:
        check_target(target)
    staging = target.parent / f".{target.name}.staging-{uuid.uuid4().hex[:8]}"
    staging.mkdir()
    try:
        try:
            yield staging
            _fsync_tree(staging)
            with deferred_interrupt():
                if check_target is not None:
                    check_target(target)
                _swap_in(staging, target)
        except OSError as exc:
            raise write_error(target, exc, replaced=os.path.lexists(target)) from exc
    except BaseException:
        shutil.rmtree(staging, ignore_errors=True)
        raise


# What the writers above leave behind when the process dies inside them (kill -9, a
# power cut, an app that quits while a job cannot stop): the names they stage under.
_STAGED_DIR = re.compile(r"\.(?P<name>.+)\.(?P<kind>staging|old|trash)-[0-9a-f]{8}")
_STAGED_FILE = re.compile(r"\..+\.[a-z0-9_]{8}\.tmp(\.[^.]+)?")


def recover_atomic_leftovers(folder: Path) -> list[Path]:
    """Finish what a killed :func:`atomic_dir` / ``atomic_write_*`` left in ``folder``.

    Afterwards every target in ``folder`` is the old complete copy or the new complete
    one. A staging folder or temporary file is removed (it was never swapped in, or it
    holds the previous copy after an exchange); an ``.old-`` copy whose target is missing
    (killed between the two renames of :func:`_swap_in`) is put back, any other
    ``.old-`` copy and any ``.trash-`` folder is removed. Sub-folders
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
