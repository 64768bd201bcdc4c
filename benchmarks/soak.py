"""Soak: many jobs back to back in one process; does memory settle, is anything left behind?

    .venv/bin/python benchmarks/soak.py            # 20 jobs on a tiny model, a few minutes
    .venv/bin/python benchmarks/soak.py --quick    # 3 shorter jobs, seconds; a test runs it

docs/reliability.md, "Load and time": 20 jobs back to back in one process, resident
memory settles (growth under 50 MB after the third job), no tensors or threads left
behind. Each job runs through ``pipeline.run`` as the app runs it (one history shared
by every job, as the window shares it): fine-tune, evaluate, benchmark, on the built-in
demo data, each into its own output folder. After each job, and a ``gc.collect()``:

- ``rss_mb``: resident memory of the process (``/proc/self/status`` VmRSS; psutil
  elsewhere), in MB (10^6 bytes);
- ``python_threads`` (``threading.active_count()``) and ``os_threads`` (every thread of
  the process, PyTorch's own pools included);
- ``live_tensors``: ``torch.Tensor`` objects the garbage collector still tracks.

Every job runs with the network refused (a socket guard, as an unreachable hub would
be): ``network_attempts`` counts the connections tried, which must be 0.

Prints one ``job N: ...`` line per job and ``key: value`` lines at the end, among them
``growth_mb_after_job_3`` (RSS after the last job minus RSS after the third) and a
verdict against the 50 MB target. Writes nothing to the docs: the figures go to
docs/reliability.md by hand, with the command. The first jobs pay one-time costs
(imports, allocator pools, the tokenizer cache), which is why growth is counted from
the third.
"""

from __future__ import annotations

import argparse
import gc
import os
import shutil
import sys
import tempfile
import threading
import time
import warnings
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

GROWTH_TARGET_MB = 50.0
SETTLED_AFTER = 3

RECIPE = """\
name: soak-{n}
model: {model}
dataset:
  train: demo
  labels: [negative, positive]
  max_length: 48
output: {output}
steps:
  - {{type: finetune, epochs: 1, max_steps: {steps}, batch_size: 16, learning_rate: 3.0e-3, log_every_steps: 5}}
  - {{type: evaluate}}
  - {{type: benchmark, sentences: 16, repeats: 2}}
"""


def rss_mb() -> float:
    """Resident memory of this process in MB (10^6 bytes)."""
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmRSS:"):
                return int(line.split()[1]) * 1024 / 1e6
    except OSError:
        pass
    import psutil

    return psutil.Process().memory_info().rss / 1e6


def os_threads() -> int:
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("Threads:"):
                return int(line.split()[1])
    except OSError:
        pass
    import psutil

    return psutil.Process().num_threads()


def live_tensors() -> int:
    import torch

    count = 0
    with warnings.catch_warnings():  # isinstance() wakes deprecated lazy torch attributes
        warnings.simplefilter("ignore")
        for obj in gc.get_objects():
            try:
                if isinstance(obj, torch.Tensor):
                    count += 1
            except ReferenceError:  # a weak proxy whose object is gone
                continue
    return count


class NetworkGuard:
    """Counts (and refuses) every attempt to open a network connection, as the hub
    being unreachable would: the catalogue's "no network access unless asked"."""

    def __init__(self) -> None:
        self.attempts: list[str] = []

    def __enter__(self) -> NetworkGuard:
        import socket

        self._saved = (socket.socket.connect, socket.socket.connect_ex, socket.create_connection)

        def refuse(*args, **kwargs):
            self.attempts.append(repr(args[1:] or args)[:80])
            raise OSError("network unreachable (soak guard)")

        socket.socket.connect = refuse
        socket.socket.connect_ex = refuse
        socket.create_connection = refuse
        return self

    def __exit__(self, *exc: object) -> None:
        import socket

        socket.socket.connect, socket.socket.connect_ex, socket.create_connection = self._saved


def snapshot() -> dict[str, float]:
    gc.collect()
    return {
        "rss_mb": rss_mb(),
        "python_threads": threading.active_count(),
        "os_threads": os_threads(),
        "live_tensors": live_tensors(),
    }


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="3 shorter jobs (a test runs it)")
    parser.add_argument("--jobs", type=int, help="how many jobs (default 20; 3 with --quick)")
    parser.add_argument("--steps", type=int, help="training steps per job (default 30; 6 quick)")
    parser.add_argument("--model", help="model folder (default: a tiny 2-layer BERT)")
    args = parser.parse_args(argv)
    jobs = args.jobs or (3 if args.quick else 20)
    steps = args.steps or (6 if args.quick else 30)
    scratch = Path(tempfile.mkdtemp(prefix="slimpajama-soak-"))
    os.environ["SLIMPAJAMA_HOME"] = str(scratch / "home")
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    try:
        from slimpajama_gui.core.jobs.pipeline import run
        from slimpajama_gui.core.plan.recipe import recipe_from_yaml
        from slimpajama_gui.core.storage.history import JobStore

        if args.model:
            model = Path(args.model)
        else:
            from gui_responsiveness import tiny_model

            model = tiny_model(scratch / "tiny")
        start = snapshot()
        print(
            f"start: rss_mb {start['rss_mb']:.1f}, python_threads {start['python_threads']}, "
            f"os_threads {start['os_threads']}, live_tensors {start['live_tensors']}",
            flush=True,
        )
        seen: list[dict[str, float]] = []
        statuses: list[str] = []
        with JobStore() as store, NetworkGuard() as network:
            for n in range(1, jobs + 1):
                text = RECIPE.format(
                    n=n, model=model, output=scratch / "results" / f"soak-{n}", steps=steps
                )
                began = time.perf_counter()
                result = run(recipe_from_yaml(text, "the soak recipe"), store=store)
                seconds = time.perf_counter() - began
                statuses.append(result.status)
                del result
                now = snapshot()
                seen.append(now)
                print(
                    f"job {n}: status {statuses[-1]}, seconds {seconds:.1f}, "
                    f"rss_mb {now['rss_mb']:.1f}, python_threads {now['python_threads']}, "
                    f"os_threads {now['os_threads']}, live_tensors {now['live_tensors']}",
                    flush=True,
                )
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    end = snapshot()
    settled = seen[min(SETTLED_AFTER, len(seen)) - 1]
    growth = seen[-1]["rss_mb"] - settled["rss_mb"]
    peak = max(s["rss_mb"] for s in seen)
    figures = {
        "jobs": jobs,
        "jobs_done": statuses.count("done"),
        "rss_mb_start": f"{start['rss_mb']:.1f}",
        f"rss_mb_after_job_{min(SETTLED_AFTER, len(seen))}": f"{settled['rss_mb']:.1f}",
        "rss_mb_last": f"{seen[-1]['rss_mb']:.1f}",
        "rss_mb_peak": f"{peak:.1f}",
        f"growth_mb_after_job_{min(SETTLED_AFTER, len(seen))}": f"{growth:.1f}",
        "python_threads_start": start["python_threads"],
        "python_threads_end": end["python_threads"],
        "os_threads_start": start["os_threads"],
        "os_threads_end": end["os_threads"],
        "live_tensors_start": start["live_tensors"],
        "live_tensors_end": end["live_tensors"],
        "network_attempts": len(network.attempts),
    }
    for key, value in figures.items():
        print(f"{key}: {value}")
    if jobs > SETTLED_AFTER:
        met = growth < GROWTH_TARGET_MB
        print(
            f"verdict: growth after job {SETTLED_AFTER} {growth:.1f} MB "
            f"(target < {GROWTH_TARGET_MB:.0f} MB): {'met' if met else 'missed'}"
        )
    else:
        print(f"verdict: too few jobs to judge growth (more than {SETTLED_AFTER} needed)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
