"""Atomic writing of files and folders: a reader sees the old output or the new one.

Files go through a temporary file and ``os.replace``; folders are staged beside their
target and swapped in (:func:`atomic_dir`), and what a killed process left is put back or
removed by :func:`recover_atomic_leftovers`. The safe *reading* of model files is in
:mod:`slimpajama_gui.core.storage.safe_io`.
"""

from __future__ import annotations

import ctypes
import errno
import functools
import os
import re
import shutil
import signal
import sys
import tempfile
import threading
import uuid
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError

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
