"""A job thread runs at a lower priority than the GUI thread, and gets it back after."""

from __future__ import annotations

import os
import sys
import threading

import pytest

from slimpajama_gui.core.jobs.priority import JOB_NICENESS, lower_thread_priority


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="per-thread nice is Linux")
def test_only_the_job_thread_is_lowered_and_threads_it_starts_inherit_it():
    seen: dict[str, int] = {}
    main_before = os.getpriority(os.PRIO_PROCESS, threading.get_native_id())

    def job() -> None:
        tid = threading.get_native_id()
        before = os.getpriority(os.PRIO_PROCESS, tid)
        with lower_thread_priority() as lowered:
            assert lowered
            seen["inside"] = os.getpriority(os.PRIO_PROCESS, tid) - before

            def child() -> None:  # like the OpenMP threads a first torch op starts
                seen["child"] = os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) - before

            t = threading.Thread(target=child)
            t.start()
            t.join()
        seen["after"] = os.getpriority(os.PRIO_PROCESS, tid) - before

    worker = threading.Thread(target=job)
    worker.start()
    worker.join()
    expected = min(19, main_before + JOB_NICENESS) - main_before
    assert seen["inside"] == expected and seen["child"] == expected
    assert os.getpriority(os.PRIO_PROCESS, threading.get_native_id()) == main_before
    if os.geteuid() == 0:  # raising a priority back needs the privilege
        assert seen["after"] == 0
