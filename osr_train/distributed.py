"""Data-parallel training under ``torchrun``: one process per rank, gloo on CPU, NCCL on CUDA.

``torchrun --standalone --nproc-per-node 2 -m osr_train siamese ...`` starts the ranks; each
finds its place in the group from torchrun's environment (`Group.from_environment`). Every
rank holds the data and the same initial weights (broadcast from rank 0); each epoch's order
comes from a `torch.utils.data.DistributedSampler` (``set_epoch`` per epoch and stage), so every
rank takes its own share of each global batch (``batch_size`` is the global batch: a rank
takes ``batch_size / world``). After each backward pass the gradients are averaged over the
ranks in one all-reduce (what ``DistributedDataParallel`` does, without its wrapper: the
trainer calls the network through several entry points), and the batch-norm statistics are
taken from rank 0 at the end of each epoch (DDP's ``broadcast_buffers``). Validation,
temperature fit, threshold calibration and evaluation use the whole validation and test sets
on rank 0 (nothing padded, nothing counted twice); only rank 0 writes.
"""

from __future__ import annotations

import contextlib
import os
from dataclasses import dataclass
from typing import Any, Iterable, Iterator

import torch


@dataclass(frozen=True)
class Group:
    """This process's place among the ranks torchrun started."""

    rank: int
    world: int
    local_rank: int
    local_world: int
    restarts: int  # how many times torchrun restarted the group before this attempt

    @property
    def main(self) -> bool:
        return self.rank == 0

    @classmethod
    def from_environment(cls) -> "Group | None":
        """The group torchrun describes in the environment (``RANK``, ``WORLD_SIZE``...), or
        None for a plain process (or a group of one)."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world <= 1 or "RANK" not in os.environ:
            return None
        return cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")),
                   int(os.environ.get("LOCAL_WORLD_SIZE", str(world))), int(os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")))


@contextlib.contextmanager
def process_group(group: Group, device: torch.device) -> Iterator[None]:
    """Join torchrun's group (gloo on CPU, NCCL on CUDA) for the block, and leave it after."""
    import torch.distributed as dist

    if device.type == "cuda":
        torch.cuda.set_device(group.local_rank)
    # torchrun's store outlives a failed attempt: a restarted group's keys get a prefix of their
    # own, or its ranks would find the dead attempt's addresses there.
    store, rank, world = next(dist.rendezvous("env://"))
    store = dist.PrefixStore(f"osr-train/attempt-{group.restarts}", store)
    dist.init_process_group("nccl" if device.type == "cuda" else "gloo", store=store, rank=rank, world_size=world)
    try:
        yield
    finally:
        dist.destroy_process_group()


def rank_device(device: torch.device, group: Group | None) -> torch.device:
    """A rank's own GPU (``cuda:LOCAL_RANK``); the CPU stays the CPU."""
    if group is not None and device.type == "cuda":
        return torch.device("cuda", group.local_rank)
    return device


def broadcast_parameters(modules: Iterable[torch.nn.Module]) -> None:
    """Rank 0's weights and buffers on every rank (the same start, whatever each initialised)."""
    import torch.distributed as dist

    for module in modules:
        for tensor in [*module.parameters(), *module.buffers()]:
            dist.broadcast(tensor.data, src=0)


def broadcast_buffers(module: torch.nn.Module) -> None:
    """Rank 0's running statistics (batch norm) on every rank."""
    import torch.distributed as dist

    for buffer in module.buffers():
        dist.broadcast(buffer.data, src=0)


def average_gradients(parameters: Iterable[torch.nn.Parameter], world: int) -> None:
    """Every rank's gradients replaced by their mean over the ranks, in one all-reduce."""
    import torch.distributed as dist
    from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

    grads = [p.grad for p in parameters if p.grad is not None]
    if not grads:
        return
    flat = _flatten_dense_tensors(grads)
    dist.all_reduce(flat)
    flat /= world
    for grad, averaged in zip(grads, _unflatten_dense_tensors(flat, grads), strict=True):
        grad.copy_(averaged)


def gather(value: Any) -> list[Any]:
    """Every rank's ``value``, by rank (on every rank)."""
    import torch.distributed as dist

    out: list[Any] = [None] * dist.get_world_size()
    dist.all_gather_object(out, value)
    return out


def barrier() -> None:
    import torch.distributed as dist

    dist.barrier()
