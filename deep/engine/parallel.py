"""How the training loop shares its work between processes: one process
(:class:`SingleProcess`) or one of several under ``torchrun`` (:class:`Distributed`,
DistributedDataParallel), and joining the process group that ``torchrun`` describes.

* **Backend**: nccl on CUDA (process ``LOCAL_RANK`` uses ``cuda:LOCAL_RANK``), gloo on the CPU.
  Without ``torchrun`` (no ``WORLD_SIZE`` in the environment) no process group is made.
* **Seeds**: rank 0's random stream is the single-process one; rank ``r > 0`` draws from a
  stream of its own (:func:`process_seed`).
* **BatchNorm**: statistics are per process; after each training epoch every process takes
  rank 0's running statistics, so all processes validate and save the same model.
* **Validation**: process ``r`` scores images ``r, r + n, r + 2n, ...`` (no padding, so no
  image counts twice); the confusion matrices are summed over the processes.
* **Files**: only rank 0 (``is_writer``) writes.
"""

from __future__ import annotations

import os
from typing import Sequence

import numpy as np
import torch
import torch.distributed as dist
from torch import nn
from torch.nn.parallel import DistributedDataParallel
from torch.utils.data.distributed import DistributedSampler


class SingleProcess:
    """The hooks through which the training loop shares its work with other processes; this
    base class is one process doing everything. :class:`Distributed` overrides them for
    DistributedDataParallel, so one loop serves one process and many."""

    rank = 0
    world_size = 1

    @property
    def is_writer(self) -> bool:
        """Whether this process writes checkpoints, ``history.csv`` and figures."""
        return self.rank == 0

    def train_sampler(self, dataset: torch.utils.data.Dataset, seed: int):
        """Sampler (with ``set_epoch``) of this process's training images; None: the
        loader shuffles the whole dataset itself."""
        return None

    def val_shard(self, n: int) -> Sequence[int]:
        """Indices of the validation images this process scores (the shards of all
        processes together hold each image exactly once)."""
        return range(n)

    def wrap(self, model: nn.Module) -> nn.Module:
        """The module that the training forward and backward go through."""
        return model

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """Sum of ``tensor`` over all processes (may work in place)."""
        return tensor

    def broadcast_buffers(self, model: nn.Module) -> None:
        """Give every process rank 0's buffers (BatchNorm running statistics)."""


class Distributed(SingleProcess):
    """The hooks for one process of an initialised process group."""

    def __init__(self, rank: int, world_size: int, device: torch.device | str):
        self.rank, self.world_size, self.device = int(rank), int(world_size), torch.device(device)

    def train_sampler(self, dataset, seed: int) -> DistributedSampler:
        # equal-length shards (padded by repeating images) keep the processes in step
        return DistributedSampler(dataset, num_replicas=self.world_size, rank=self.rank, shuffle=True,
                                  seed=seed, drop_last=False)

    def val_shard(self, n: int) -> Sequence[int]:
        return range(self.rank, n, self.world_size)  # strided, never padded

    def wrap(self, model: nn.Module) -> nn.Module:
        device_ids = [self.device.index] if self.device.type == "cuda" else None
        return DistributedDataParallel(model, device_ids=device_ids)

    def all_reduce_sum(self, tensor: torch.Tensor) -> torch.Tensor:
        on_device = tensor.to(self.device)  # nccl reduces CUDA tensors only
        dist.all_reduce(on_device, op=dist.ReduceOp.SUM)
        return on_device.to(tensor.device)

    def broadcast_buffers(self, model: nn.Module) -> None:
        for buffer in model.buffers():
            dist.broadcast(buffer, src=0)


def process_seed(seed: int, rank: int, start_epoch: int = 1) -> int:
    """Seed of the random augmentation stream of process ``rank`` (``seed`` itself for
    rank 0, so that one process trains exactly as without distribution)."""
    if rank == 0:
        return seed
    return int(np.random.SeedSequence([seed, rank, start_epoch]).generate_state(1)[0])


def default_device() -> str:
    return "cuda" if torch.cuda.is_available() else "cpu"


def setup(device: str | None = None) -> tuple[SingleProcess, torch.device]:
    """Join the process group that ``torchrun`` describes in the environment (``RANK``,
    ``WORLD_SIZE``, ``LOCAL_RANK``, ``MASTER_ADDR``, ``MASTER_PORT``) and return this
    process's hooks and device. Without ``WORLD_SIZE``: one process, no process group."""
    device = torch.device(device or default_device())
    if "WORLD_SIZE" not in os.environ:
        return SingleProcess(), device
    rank, world_size = int(os.environ["RANK"]), int(os.environ["WORLD_SIZE"])
    local_rank = int(os.environ.get("LOCAL_RANK", rank))
    if device.type == "cuda":
        if device.index is None:
            device = torch.device("cuda", local_rank)
        elif world_size > 1:
            raise ValueError(f"device {device}: with several processes pass plain 'cuda' "
                             "(process LOCAL_RANK uses cuda:LOCAL_RANK)")
        torch.cuda.set_device(device)
    elif device.type != "cpu":
        raise ValueError(f"device {device}: only cuda (nccl) and cpu (gloo) are supported")
    if not dist.is_initialized():
        dist.init_process_group(backend="nccl" if device.type == "cuda" else "gloo")
    return Distributed(rank, world_size, device), device


def cleanup() -> None:
    if dist.is_available() and dist.is_initialized():
        dist.destroy_process_group()
