"""The ``torchrun`` commands that run a saved recipe on several processes or machines.

The app launches nothing itself: PyTorch's ``torchrun`` starts the processes and
``slimpajama run`` notices it (``core/techniques/distributed.py``). These are the
commands the wizard's "Run on a cluster…" shows. No torch import here.

Example:
    >>> torchrun_commands("/data/sst2.yaml", processes=4)
    ['torchrun --standalone --nproc_per_node=4 -m slimpajama_gui.cli run /data/sst2.yaml']
    >>> torchrun_commands("/data/sst2.yaml", processes=8, nodes=2, host="gpu-a", job="sst2")[1]
    'torchrun --nnodes=2 --nproc_per_node=8 --node_rank=1 --rdzv_backend=c10d --rdzv_endpoint=gpu-a:29500 --rdzv_id=sst2 -m slimpajama_gui.cli run /data/sst2.yaml'
"""

from __future__ import annotations

import shlex
from pathlib import Path

from slimpajama_gui.core.plan.fields import Bounds

#: torchrun's own default rendezvous port.
DEFAULT_PORT = 29500
#: Processes per machine (one per GPU; on CPUs, a few) and machines: far above any real
#: cluster, low enough to catch a typo. The cluster dialog's fields allow these ranges.
PROCESSES = Bounds(1, 1024)
NODES = Bounds(1, 4096)
PORTS = Bounds(1, 65535)


def torchrun_commands(
    recipe: str | Path,
    *,
    processes: int,
    nodes: int = 1,
    host: str = "",
    port: int = DEFAULT_PORT,
    job: str = "slimpajama",
) -> list[str]:
    """One command per machine (node ``K`` runs item ``K``).

    Args:
        recipe: the saved recipe's path; every machine must see the file (and the
            model and data it names) at that path.
        processes: processes per machine (one per GPU; on CPUs, a few).
        nodes: machines; more than one needs ``host`` (the first machine's name or
            address, reachable from the others) and ``port``.
        job: the rendezvous id, the same on every machine.

    Raises:
        ValueError: ``processes``, ``nodes`` or ``port`` outside :data:`PROCESSES`,
            :data:`NODES`, :data:`PORTS`, or several machines without a ``host``.
    """
    for name, value, bounds in (("processes", processes, PROCESSES), ("nodes", nodes, NODES)):
        if not bounds.admits(value):
            raise ValueError(f"{name} must be from {bounds.low} to {bounds.high}, not {value}")
    tail = f"-m slimpajama_gui.cli run {shlex.quote(str(recipe))}"
    if nodes == 1:
        return [f"torchrun --standalone --nproc_per_node={processes} {tail}"]
    if not host.strip():
        raise ValueError("several machines need the first machine's host name or address")
    if not PORTS.admits(port):
        raise ValueError(f"port must be from {PORTS.low} to {PORTS.high}, not {port}")
    endpoint = shlex.quote(f"{host.strip()}:{port}")
    return [
        f"torchrun --nnodes={nodes} --nproc_per_node={processes} --node_rank={rank} "
        f"--rdzv_backend=c10d --rdzv_endpoint={endpoint} --rdzv_id={shlex.quote(job)} {tail}"
        for rank in range(nodes)
    ]
