"""Let a job's threads yield the CPU to the window on a small machine.

On a 2-core laptop a training job's intra-op threads take both cores, and the GUI
thread waits for a time slice before it can paint: 40-55 ms event-loop stalls a few
times a second in ``benchmarks/gui_responsiveness.py``. Lowering the job thread's
scheduling priority (Linux ``nice`` is per thread, and the OpenMP threads it starts
inherit it) removed every stall over 50 ms there, and costs the job nothing when the
GUI is idle, because priority only matters when both want the CPU.
"""

from __future__ import annotations

import contextlib
import logging
import os
import sys
import threading
from collections.abc import Iterator

log = logging.getLogger(__name__)

#: How much nicer a job thread is than the GUI (0..19; 10 gives the GUI ~10x the share).
JOB_NICENESS = 10


@contextlib.contextmanager
def lower_thread_priority(increment: int = JOB_NICENESS) -> Iterator[bool]:
    """Run the body with the calling thread's priority lowered; yields whether it was.

    Linux only (elsewhere ``setpriority`` applies to the whole process, which would slow
    the window too). The old priority is restored afterwards where the OS lets an
    unprivileged thread raise it back; where it does not, the pool thread stays nice,
    which only ever slows background work.
    """
    if not sys.platform.startswith("linux") or increment <= 0:
        yield False
        return
    tid = threading.get_native_id()
    try:
        before = os.getpriority(os.PRIO_PROCESS, tid)
        os.setpriority(os.PRIO_PROCESS, tid, min(19, before + increment))
    except OSError as exc:
        log.debug("could not lower the job thread's priority: %s", exc)
        yield False
        return
    try:
        yield True
    finally:
        with contextlib.suppress(OSError):
            os.setpriority(os.PRIO_PROCESS, tid, before)
