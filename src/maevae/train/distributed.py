"""Distributed data parallel helpers (torchrun; NCCL on GPUs, gloo on CPU).

The global batch of ``train.batch_size`` images is split evenly over the ranks. Every rank
draws the binarisation and reparameterisation noise of the *whole* global batch from the
same per-step generator and keeps its slice, and the MAE regularizer sees the posteriors of
the whole global batch through a differentiable all-gather — so N processes with batch
b = B / N compute exactly what one process computes with batch B.
"""

from __future__ import annotations

import os
from dataclasses import dataclass

import torch
import torch.distributed as dist

__all__ = [
    "DistInfo",
    "all_gather_grad",
    "all_ranks",
    "all_reduce_mean",
    "barrier",
    "init_distributed",
    "max_over_ranks",
]


@dataclass
class DistInfo:
    """This process's place under ``torchrun``: its rank, the world size and the local
    rank (one process: 0, 1, 0)."""
    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def enabled(self) -> bool:
        """True when more than one process trains."""
        return self.world > 1

    @property
    def is_main(self) -> bool:
        """True for rank 0 (the process that logs and writes files)."""
        return self.rank == 0


def init_distributed(device: torch.device) -> DistInfo:
    """Join the process group when launched by torchrun (WORLD_SIZE > 1)."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world <= 1:
        return DistInfo()
    if not dist.is_initialized():
        backend = "nccl" if device.type == "cuda" else "gloo"
        dist.init_process_group(backend=backend)
    info = DistInfo(dist.get_rank(), dist.get_world_size(), int(os.environ.get("LOCAL_RANK", 0)))
    if device.type == "cuda":
        torch.cuda.set_device(info.local_rank)
    return info


class _AllGather(torch.autograd.Function):
    """Concatenate equal-sized [b, ...] tensors from all ranks along dim 0; the backward pass
    sums the incoming gradients over ranks and returns this rank's slice."""

    @staticmethod
    def forward(ctx, x: torch.Tensor) -> torch.Tensor:
        world = dist.get_world_size()
        parts = [torch.empty_like(x) for _ in range(world)]
        dist.all_gather(parts, x.contiguous())
        ctx.rank, ctx.b = dist.get_rank(), x.shape[0]
        return torch.cat(parts, 0)

    @staticmethod
    def backward(ctx, grad: torch.Tensor) -> torch.Tensor:
        grad = grad.contiguous()
        dist.all_reduce(grad, op=dist.ReduceOp.SUM)
        return grad[ctx.rank * ctx.b:(ctx.rank + 1) * ctx.b]


def all_gather_grad(x: torch.Tensor, info: DistInfo) -> torch.Tensor:
    """Differentiable all-gather (identity when not distributed)."""
    return _AllGather.apply(x) if info.enabled else x


def all_reduce_mean(values: dict[str, float], info: DistInfo,
                    device: torch.device | str = "cpu") -> dict[str, float]:
    """The mean over ranks of each value (one all-reduce); ``values`` unchanged when alone.

    Per-rank means of equal-sized slices average to the global-batch mean, so the logged
    recon / loss / ELBO are those of the global batch."""
    if not info.enabled:
        return values
    keys = sorted(values)
    t = torch.tensor([values[k] for k in keys], dtype=torch.float64, device=device)
    dist.all_reduce(t)
    return {k: v / info.world for k, v in zip(keys, t.tolist())}


def all_ranks(flag: bool, info: DistInfo, device: torch.device | str = "cpu") -> bool:
    """True when ``flag`` holds on every rank: decisions that change the collective calls
    (e.g. skipping backward on a non-finite loss) must be taken by all ranks alike."""
    if not info.enabled:
        return flag
    t = torch.tensor([1.0 if flag else 0.0], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MIN)
    return bool(t.item() > 0)


def barrier(info: DistInfo) -> None:
    """Wait for every process (nothing with one process)."""
    if info.enabled:
        dist.barrier()


def max_over_ranks(value: int, info: DistInfo, device: torch.device | str = "cpu") -> int:
    """The largest of the ranks' ``value`` (e.g. a signal number, 0 for none): a signal
    received by one rank stops all of them at the same step boundary."""
    if not info.enabled:
        return value
    t = torch.tensor([float(value)], device=device)
    dist.all_reduce(t, op=dist.ReduceOp.MAX)
    return int(t.item())
