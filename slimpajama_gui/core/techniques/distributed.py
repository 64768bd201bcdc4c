"""Several training processes under ``torchrun``: PyTorch's DistributedDataParallel.

Nothing here launches processes or moves tensors between machines by itself: torchrun
starts one process per rank and sets ``RANK``, ``WORLD_SIZE``, ``LOCAL_RANK``,
``MASTER_ADDR`` and ``MASTER_PORT``; :func:`start` joins that process group
(``gloo`` on CPU, ``nccl`` on CUDA, one GPU per local rank) and the training loop wraps
the model in ``DistributedDataParallel``. This module adds what a recipe needs on top:

* :func:`shard_batch`: every rank takes a contiguous slice of each *global* batch, the
  batch one process would train on (same seed, same length ordering), with a loss
  weight that makes the ranks' averaged gradient the global batch's mean gradient.
* :func:`agree_max`: the one collective behind stopping. ``train.Control`` shares a
  stop request on any rank (a signal, the GUI) at the next agreement point, so all
  ranks stop at the same optimizer step and no rank waits forever in a collective
  another rank has left.
* :func:`reduce_sum`: metrics (logged losses, evaluation counts) summed across ranks.

Only rank 0 writes artifacts and history rows (``core/jobs/pipeline.py`` decides
that); this module only answers who is who.

Example (what ``slimpajama run`` does when torchrun started it)::

    group = start("auto")          # None when not launched by torchrun
    ...                            # every rank runs the recipe; rank 0 writes
    stop()
"""

from __future__ import annotations

import datetime
import logging
import os
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass

import torch

from slimpajama_gui.core.errors import UserError

log = logging.getLogger(__name__)

#: The variables torchrun sets in every process it starts.
LAUNCH_ENV = ("RANK", "WORLD_SIZE", "LOCAL_RANK")
#: How long a rank waits in a collective for the others (e.g. while rank 0 alone
#: benchmarks a variant) before the job fails instead of hanging.
TIMEOUT = datetime.timedelta(minutes=60)


@dataclass(frozen=True)
class Group:
    """This process's place among the ones torchrun started."""

    rank: int
    world_size: int
    local_rank: int
    backend: str  # "gloo" | "nccl"

    @property
    def is_main(self) -> bool:
        """Rank 0: the one process that writes variants, history rows and logs."""
        return self.rank == 0

    def describe(self) -> str:
        return f"{self.world_size} processes (torchrun, {self.backend})"


_group: Group | None = None


def launched() -> bool:
    """Whether torchrun started this process as one of several (``WORLD_SIZE`` > 1).

    Raises:
        UserError: a torchrun variable is set but is not a whole number.
    """
    return _read_env() is not None


def _read_env() -> tuple[int, int, int] | None:
    if "WORLD_SIZE" not in os.environ:
        return None
    values = []
    for name in LAUNCH_ENV:
        raw = os.environ.get(name, "0")
        try:
            values.append(int(raw))
        except ValueError:
            raise UserError(
                f"the environment variable {name}={raw!r} is not a whole number; it is set "
                "by torchrun: start the job with torchrun, or unset RANK, WORLD_SIZE and "
                "LOCAL_RANK to run it as one process."
            ) from None
    rank, world, local = values
    if world <= 1:
        return None
    if not 0 <= rank < world:
        raise UserError(
            f"RANK={rank} is outside 0..{world - 1} (WORLD_SIZE={world}); start the job "
            "with torchrun, which sets both."
        )
    return rank, world, local


def current() -> Group | None:
    """The group :func:`start` joined, or None in a single process."""
    return _group


def start(device: str = "auto") -> Group | None:
    """Join torchrun's process group when launched by it; None otherwise.

    ``device`` is the recipe's (or ``--device``'s): ``nccl`` with one GPU per local rank
    when it is ``cuda`` or ``auto`` and CUDA is present, else ``gloo`` on the CPU.

    Raises:
        UserError: ``device: cuda`` on a machine without CUDA, or fewer GPUs than
            processes on this node.
    """
    global _group
    if _group is not None:
        return _group
    env = _read_env()
    if env is None:
        return None
    rank, world, local = env
    import torch.distributed as dist

    use_cuda = device.startswith("cuda") or (device == "auto" and torch.cuda.is_available())
    if use_cuda:
        if not torch.cuda.is_available():
            raise UserError(
                f"device: {device} asks for a CUDA GPU but PyTorch sees none on this machine; "
                "set 'device: cpu' (or 'auto') in the recipe, or pass --device cpu."
            )
        if local >= torch.cuda.device_count():
            raise UserError(
                f"torchrun started local rank {local} but this machine has "
                f"{torch.cuda.device_count()} CUDA GPU(s); give --nproc_per_node at most "
                "the number of GPUs."
            )
        torch.cuda.set_device(local)
    backend = "nccl" if use_cuda else "gloo"
    dist.init_process_group(backend=backend, timeout=TIMEOUT)
    _group = Group(rank=rank, world_size=world, local_rank=local, backend=backend)
    log.info("rank %d of %d joined the process group (%s)", rank, world, backend)
    return _group


def stop() -> None:
    """Leave the process group (every rank, at its end)."""
    global _group
    if _group is None:
        return
    import torch.distributed as dist

    if dist.is_initialized():
        dist.destroy_process_group()
    _group = None


def device(requested: str) -> torch.device | None:
    """This rank's device in a group: ``cuda:LOCAL_RANK`` on nccl, the CPU on gloo.

    None outside a group (the caller picks as for one process).
    """
    if _group is None:
        return None
    if _group.backend == "nccl":
        return torch.device("cuda", _group.local_rank)
    if requested.startswith("cuda"):
        raise UserError(
            f"device: {requested} asks for a GPU but the process group runs on gloo (CPU); "
            "set 'device: cpu' or 'auto' in the recipe."
        )
    return torch.device("cpu")


def _tensor_device() -> torch.device:
    assert _group is not None
    return (
        torch.device("cuda", _group.local_rank) if _group.backend == "nccl" else torch.device("cpu")
    )


def _all_reduce(values: torch.Tensor, op: str) -> torch.Tensor:
    """``values`` reduced with ``op`` ("SUM", "MAX") over every rank, in place; unchanged
    alone. gloo reduces CPU tensors and nccl GPU ones, so ``values`` travels if needed."""
    if _group is None:
        return values
    import torch.distributed as dist

    moved = values.to(_tensor_device())
    dist.all_reduce(moved, op=getattr(dist.ReduceOp, op))
    if moved is not values:
        values.copy_(moved.to(values.device))
    return values


def reduce_sum(values: torch.Tensor) -> torch.Tensor:
    """``values`` summed over every rank (in place and returned); unchanged alone."""
    return _all_reduce(values, "SUM")


def reduce_max(values: torch.Tensor) -> torch.Tensor:
    """``values`` maximised over every rank (in place and returned); unchanged alone."""
    return _all_reduce(values, "MAX")
    import torch.distributed as dist

    moved = values.to(_tensor_device())
    dist.all_reduce(moved, op=dist.ReduceOp.MAX)
    if moved is not values:
        values.copy_(moved.to(values.device))
    return values


# --------------------------------------------------------------------------- data


#: Keys :func:`shard_batch` adds; the training loop pops them before the loss sees the batch.
LOSS_WEIGHT, ROWS = "loss_weight", "rows"


def shard_batch(batch: Mapping[str, torch.Tensor], group: Group) -> dict[str, torch.Tensor]:
    """This rank's contiguous slice of a global batch (rows split as evenly as possible).

    Adds ``loss_weight`` (0-d float: ``rows_here * world_size / rows_global``, so the
    mean of the ranks' weighted losses is the global batch's mean loss and DDP's
    gradient average equals one process's gradient) and ``rows`` (0-d long: the real
    rows here). A rank left without rows (a last batch smaller than the world) gets the
    batch's first row with weight 0, because DDP needs every rank in every backward.
    Padding columns no row of the slice uses are cut off.
    """
    n = int(batch["input_ids"].shape[0])
    bounds = [n * r // group.world_size for r in range(group.world_size + 1)]
    lo, hi = bounds[group.rank], bounds[group.rank + 1]
    rows = hi - lo
    take = slice(lo, hi) if rows else slice(0, 1)
    out = {k: v[take] for k, v in batch.items()}
    mask = out.get("attention_mask")
    if mask is not None and mask.ndim == 2 and mask.shape[1] > 0:
        width = max(1, int(mask.sum(dim=1).max()))
        for key in ("input_ids", "attention_mask", "token_type_ids"):
            if key in out and out[key].ndim == 2:
                out[key] = out[key][:, :width]
    out[LOSS_WEIGHT] = torch.tensor(rows * group.world_size / n, dtype=torch.float32)
    out[ROWS] = torch.tensor(rows, dtype=torch.long)
    return out


def shard_batches(batches: Iterable[Mapping[str, torch.Tensor]]) -> Iterator[dict]:
    """:func:`shard_batch` of every batch for this rank; unchanged outside a group."""
    for batch in batches:
        yield shard_batch(batch, _group) if _group is not None else dict(batch)


def every_nth(batches: Iterable, group: Group | None = None) -> Iterator:
    """Batches ``rank, rank + world, ...`` (evaluation: each rank predicts its share)."""
    group = group or _group
    for i, batch in enumerate(batches):
        if group is None or i % group.world_size == group.rank:
            yield batch


# --------------------------------------------------------------------------- agreeing


def agree_max(flags: Iterable[bool | float | torch.Tensor]) -> list[float]:
    """One all-reduce (max) of a few flags, every rank at the same point; the agreed
    values. Alone: the flags as floats. Device tensors stay on the device until the
    one copy of the result to the host."""
    flags = list(flags)
    if _group is None:
        return [float(f) for f in flags]
    where = _tensor_device()
    stacked = torch.stack(
        [
            f.detach().to(where, torch.float32).reshape(())
            if isinstance(f, torch.Tensor)
            else torch.tensor(float(f), device=where)
            for f in flags
        ]
    )
    return reduce_max(stacked).tolist()
