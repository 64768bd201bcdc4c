"""Who holds what: the one-writer lock on output folders, and whether a process lives.

:class:`OutputLock` keeps two jobs from writing the same output folder
(docs/reliability.md F7). :func:`pid_alive` and :func:`pid_token` tell the job history
whether the process that ran a job still exists (F6).
"""

from __future__ import annotations

import contextlib
import errno
import json
import os
import socket
import sys
import time
from pathlib import Path
from typing import Any

from slimpajama_gui.core.errors import UserError

try:  # POSIX; Windows falls back to an O_EXCL lock file
    import fcntl
except ImportError:  # pragma: no cover - exercised on Windows only
    fcntl = None  # type: ignore[assignment]


# --------------------------------------------------------------------------- processes


def host_name() -> str:
    return socket.gethostname()


def pid_alive(pid: int) -> bool:
    """Whether a process with this id exists on this machine."""
    if pid <= 0:
        return False
    if sys.platform == "win32":  # pragma: no cover - os.kill(pid, 0) would kill it there
        import ctypes

        handle = ctypes.windll.kernel32.OpenProcess(0x1000, False, pid)  # QUERY_LIMITED
        if not handle:
            return False
        code = ctypes.c_ulong()
        ctypes.windll.kernel32.GetExitCodeProcess(handle, ctypes.byref(code))
        ctypes.windll.kernel32.CloseHandle(handle)
        return code.value == 259  # STILL_ACTIVE
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True  # exists, owned by someone else
    except OSError:
        return False
    return True


def pid_token(pid: int) -> str | None:
    """Something that tells this process apart from a later one given the same pid.

    On Linux: the boot id and the process start time; elsewhere ``None`` (then only
    :func:`pid_alive` is used).
    """
    try:
        boot = Path("/proc/sys/kernel/random/boot_id").read_text().strip()
        stat = Path(f"/proc/{pid}/stat").read_text()
        # Field 22 (start time); split after the ")" that ends the command name.
        start = stat.rsplit(")", 1)[1].split()[19]
        return f"{boot}:{start}"
    except (OSError, IndexError):
        return None


def process_gone(pid: int | None, token: str | None) -> bool:
    if pid is None or not pid_alive(pid):
        return True
    if token is not None:
        now = pid_token(pid)
        if now is not None and now != token:
            return True  # the pid was reused by another process
    return False


# --------------------------------------------------------------------------- output lock

LOCK_SUFFIX = ".slimpajama.lock"


class OutputLock:
    """One writer per output folder (docs/reliability.md F7), across threads and processes.

    The lock file ``.<folder name>.slimpajama.lock`` sits beside the folder, not inside
    it, because a finished variant replaces its folder atomically. It is held with
    ``fcntl.flock``, so the kernel frees it when the holder dies; where ``flock`` is
    missing (Windows) or refused (some network file systems) an ``O_EXCL`` file with the
    holder's pid is used and a dead holder's file is taken over.

    Example:
        >>> with OutputLock(Path("out/sst2-small"), job_id=3):  # doctest: +SKIP
        ...     run_steps()
    """

    def __init__(self, folder: Path | str, job_id: int | None = None) -> None:
        # Resolved, so two spellings of one folder (a link to it) take the same lock (P1).
        self.folder = Path(folder).expanduser().resolve()
        self.job_id = job_id
        self.path = self.folder.parent / f".{self.folder.name}{LOCK_SUFFIX}"
        self._fd: int | None = None
        self._exclusive_file = False

    @property
    def held(self) -> bool:
        return self._fd is not None

    def _record(self) -> bytes:
        return json.dumps({"job": self.job_id, "pid": os.getpid(), "host": host_name()}).encode()

    def _refuse(self, holder: dict[str, Any]) -> UserError:
        job = holder.get("job")
        who = f"job {job}" if job is not None else "another job"
        pid = holder.get("pid")
        if pid is not None:
            host = holder.get("host")
            who += f" (pid {pid}{'' if host in (None, host_name()) else f' on {host}'})"
        return UserError(
            f"{self.folder} is already being written by {who}. Wait for it to finish, "
            "cancel it, or choose another output folder."
        )

    def _read_holder(self) -> dict[str, Any]:
        try:
            data = json.loads(self.path.read_bytes() or b"{}")
            return data if isinstance(data, dict) else {}
        except (OSError, ValueError):
            return {}

    def acquire(self) -> OutputLock:
        """Take the lock or raise :class:`UserError` naming the holder."""
        if self._fd is not None:
            raise RuntimeError("OutputLock is already held by this object")
        self.folder.parent.mkdir(parents=True, exist_ok=True)
        if fcntl is not None:
            try:
                self._acquire_flock()
                return self
            except _FlockUnsupported:
                pass
        self._acquire_exclusive_file()
        return self

    def _acquire_flock(self) -> None:
        assert fcntl is not None
        for _ in range(50):
            fd = os.open(self.path, os.O_RDWR | os.O_CREAT, 0o644)
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                os.close(fd)
                raise self._refuse(self._read_holder()) from None
            except OSError as exc:
                os.close(fd)
                if exc.errno in (errno.ENOLCK, errno.EOPNOTSUPP, errno.ENOSYS):
                    raise _FlockUnsupported from exc
                raise
            # A releasing holder unlinks the file; if we locked an unlinked inode,
            # start over on the file that is at the path now.
            try:
                same = os.path.samestat(os.fstat(fd), os.stat(self.path))
            except FileNotFoundError:
                same = False
            if not same:
                os.close(fd)
                continue
            os.ftruncate(fd, 0)
            os.write(fd, self._record())
            self._fd = fd
            return
        raise UserError(f"Could not lock {self.folder}: the lock file {self.path} keeps changing.")

    def _acquire_exclusive_file(self) -> None:
        for _ in range(50):
            try:
                fd = os.open(self.path, os.O_RDWR | os.O_CREAT | os.O_EXCL, 0o644)
            except FileExistsError:
                holder = self._read_holder()
                pid = holder.get("pid")
                same_host = holder.get("host") in (None, host_name())
                if isinstance(pid, int) and same_host and not pid_alive(pid):
                    # A stale lock of a dead process: take it over.
                    with contextlib.suppress(FileNotFoundError):
                        os.unlink(self.path)
                    continue
                if not holder:
                    # Being written right now, or an empty leftover; look again shortly.
                    time.sleep(0.01)
                    holder = self._read_holder()
                    if not holder:
                        with contextlib.suppress(FileNotFoundError):
                            os.unlink(self.path)
                        continue
                raise self._refuse(holder) from None
            os.write(fd, self._record())
            self._fd = fd
            self._exclusive_file = True
            return
        raise UserError(f"Could not lock {self.folder}: the lock file {self.path} keeps changing.")

    def release(self) -> None:
        """Give the lock back (idempotent)."""
        fd, self._fd = self._fd, None
        if fd is None:
            return
        # Unlink while still holding it, so nobody can lock the file we remove.
        with contextlib.suppress(FileNotFoundError):
            os.unlink(self.path)
        if not self._exclusive_file and fcntl is not None:
            with contextlib.suppress(OSError):
                fcntl.flock(fd, fcntl.LOCK_UN)
        os.close(fd)
        self._exclusive_file = False

    def __enter__(self) -> OutputLock:
        return self.acquire()

    def __exit__(self, *exc: object) -> None:
        self.release()

    def __del__(self) -> None:  # a forgotten lock must not outlive its object
        with contextlib.suppress(Exception):
            self.release()


class _FlockUnsupported(Exception):
    pass
