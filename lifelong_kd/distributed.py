"""Many processes (``torchrun``): who this process is, and the few collectives the loop needs.

A run on N processes is the single-process run with every global batch split across them. Every
process holds the whole stream, the model, the teacher and the replay memory, and draws the same
random numbers from the same seeded generators, so it knows the global batch; it forwards only its
shard, rows ``rank::world`` (``shard``). Gradients are averaged by ``DistributedDataParallel``;
what one process alone computed (DER's logits of its rows, features for herding) is gathered back
into the global order (``gather_rows``), and evaluation counts are summed (``sum``). The memory
therefore sees the same global batch, in the same order, on every process.

``Distributed()`` is the one process of a plain run: every collective is the identity.

Design: ``lifelong_kd/DESIGN.md``, "Under DDP".
"""

from __future__ import annotations

import hashlib
import os
import signal
import traceback
from collections.abc import Callable
from dataclasses import dataclass
from datetime import timedelta
from pathlib import Path
from typing import Any

import torch
import torch.distributed as dist

TIMEOUT_SECONDS = 300


@dataclass(frozen=True)
class Distributed:
    """This process's place in the group: ``rank`` of ``world``, on device ``local_rank`` of its node."""

    rank: int = 0
    world: int = 1
    local_rank: int = 0

    @property
    def main(self) -> bool:
        """Rank 0: the process that writes results, checkpoints and progress bars."""
        return self.rank == 0

    @property
    def active(self) -> bool:
        return self.world > 1

    @classmethod
    def from_environment(cls, device: str) -> Distributed:
        """The group ``torchrun`` started this process in (``WORLD_SIZE``, ``RANK``, ``LOCAL_RANK``),
        with its process group joined: ``nccl`` for ``cuda``, ``gloo`` for ``cpu``. Without torchrun,
        the one process of a plain run."""
        world = int(os.environ.get("WORLD_SIZE", "1"))
        if world == 1:
            return cls()
        group = cls(int(os.environ["RANK"]), world, int(os.environ.get("LOCAL_RANK", "0")))
        group.join(device, "env://")
        return group

    def join(self, device: str, init_method: str) -> None:
        """Join the process group (one device per process on CUDA).

        The group's keys go under a prefix of torchrun's restart count: a group torchrun restarted
        may meet the same store, and must not read the dead group's addresses from it."""
        if device == "cuda":
            torch.cuda.set_device(self.local_rank)
        if dist.is_initialized():
            return
        timeout = timedelta(seconds=TIMEOUT_SECONDS)
        store, _, _ = next(dist.rendezvous(init_method, self.rank, self.world, timeout=timeout))
        attempt = os.environ.get("TORCHELASTIC_RESTART_COUNT", "0")
        backend = "nccl" if device == "cuda" else "gloo"
        dist.init_process_group(backend, store=dist.PrefixStore(f"attempt{attempt}", store), rank=self.rank,
                                world_size=self.world, timeout=timeout)

    def leave(self) -> None:
        """Leave the process group (at the end of the run)."""
        if self.active and dist.is_initialized():
            dist.destroy_process_group()

    def device(self, device: str) -> str:
        """``cuda:LOCAL_RANK`` for a CUDA run on many processes, else ``device``."""
        return f"cuda:{self.local_rank}" if device == "cuda" and self.active else device

    def shard(self, rows: int) -> slice:
        """This process's rows of a global batch of ``rows``: ``rank::world``."""
        return slice(self.rank, rows, self.world)

    def shard_size(self, rows: int, rank: int | None = None) -> int:
        """How many of ``rows`` rows a process's shard holds (``shard``; this process's by default)."""
        return len(range(self.rank if rank is None else rank, rows, self.world))

    def step_rows(self, n_current: int, rows: int, device: torch.device) -> torch.Tensor:
        """This process's rows of a step's global batch: its shard of the ``n_current`` current samples,
        then its shard of the replayed ones that follow them (``rows`` in all)."""
        everything = torch.arange(rows)
        return torch.cat([everything[: n_current][self.shard(n_current)],
                          everything[n_current:][self.shard(rows - n_current)]]).to(device)

    def gather_step_rows(self, local: torch.Tensor, n_current: int, rows: int) -> torch.Tensor:
        """The inverse of ``step_rows``: the global batch's rows, current then replayed, from every shard."""
        mine = self.shard_size(n_current)
        current = self.gather_rows(local[:mine], n_current)
        if rows == n_current:
            return current
        return torch.cat([current, self.gather_rows(local[mine:], rows - n_current)])

    def gather_rows(self, local: torch.Tensor, rows: int) -> torch.Tensor:
        """The global batch of ``rows`` rows from every process's shard (``shard``), in global order."""
        if not self.active:
            return local
        width = -(-rows // self.world)
        padded = local.new_zeros((width, *local.shape[1:]))
        padded[: len(local)] = local
        parts = local.new_empty((self.world * width, *local.shape[1:]))
        getattr(dist, "all_gather_single", dist.all_gather_into_tensor)(parts, padded)  # the new name, if known
        parts = parts.view(self.world, width, *local.shape[1:])
        merged = local.new_empty((rows, *local.shape[1:]))
        for rank in range(self.world):
            count = self.shard_size(rows, rank)
            merged[rank :: self.world] = parts[rank, :count]
        return merged

    def sum(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` summed over the processes (a new tensor)."""
        if not self.active:
            return tensor
        total = tensor.clone()
        dist.all_reduce(total)
        return total

    def mean(self, tensor: torch.Tensor) -> torch.Tensor:
        """``tensor`` averaged over the processes."""
        return self.sum(tensor) / self.world if self.active else tensor

    def any(self, flag: bool, device: torch.device) -> bool:
        """Whether ``flag`` holds on any process (one host sync)."""
        return self.any_of([flag], device)[0]

    def any_of(self, flags: list[bool], device: torch.device) -> list[bool]:
        """For each flag, whether it holds on any process (one all-reduce, one host sync)."""
        if not self.active:
            return flags
        return [bool(count) for count in self.sum(torch.tensor([int(flag) for flag in flags], device=device)).tolist()]

    def check_same(self, state: Any, what: str, device: torch.device) -> str:
        """The hash of ``state`` (tensors in plain containers); ``RuntimeError`` when it differs between
        processes (the memory must be one, identical everywhere)."""
        digest = state_hash(state)
        if self.active:
            mine = torch.tensor(list(bytes.fromhex(digest)), dtype=torch.int64, device=device)
            lowest, highest = mine.clone(), mine.clone()
            dist.all_reduce(lowest, op=dist.ReduceOp.MIN)
            dist.all_reduce(highest, op=dist.ReduceOp.MAX)
            if not torch.equal(lowest, highest):
                raise RuntimeError(f"{what} differs between the processes (rank {self.rank}: {digest[:12]})")
        return digest

    def barrier(self) -> None:
        if self.active:
            dist.barrier()


def state_hash(state: Any) -> str:
    """SHA-256 of tensors (their dtype, shape and bytes) and plain values, in order."""
    digest = hashlib.sha256()

    def visit(value: Any) -> None:
        if isinstance(value, torch.Tensor):
            tensor = value.detach().cpu().contiguous()
            digest.update(f"{tensor.dtype}{tuple(tensor.shape)}".encode())
            digest.update(tensor.reshape(-1).view(torch.uint8).numpy().tobytes())
        elif isinstance(value, dict):
            for key in sorted(value, key=str):
                digest.update(str(key).encode())
                visit(value[key])
        elif isinstance(value, list | tuple):
            for item in value:
                visit(item)
        else:
            digest.update(repr(value).encode())

    visit(state)
    return digest.hexdigest()


def run_forked(
    world: int, work: Callable[[Distributed], Any], folder: Path, threads: int = 1, limit_seconds: int = 120,
) -> list[Any]:
    """``work(group)`` on ``world`` forked processes of ``threads`` threads each, joined in a gloo
    group through a file in ``folder`` (one process: no group); each process's result, by rank.

    For tests and benchmarks on one machine, the way ``torchrun`` would start the processes. A
    process that fails prints its traceback; one still running after ``limit_seconds`` (a hung
    collective) is ended by an alarm. Either raises ``RuntimeError`` here.
    """
    pids = []
    for rank in range(world):
        pid = os.fork()
        if pid == 0:  # the child
            code = 1
            try:
                signal.alarm(limit_seconds)
                torch.set_num_threads(threads)
                group = Distributed(rank, world)
                if world > 1:
                    group.join("cpu", f"file://{folder / 'rendezvous'}")
                torch.save(work(group), folder / f"rank{rank}.pt")
                group.leave()
                code = 0
            except BaseException:
                traceback.print_exc()
            finally:
                os._exit(code)
        pids.append(pid)
    codes = [os.waitstatus_to_exitcode(os.waitpid(pid, 0)[1]) for pid in pids]
    if codes != [0] * world:
        raise RuntimeError(f"forked processes exited with {codes}")
    return [torch.load(folder / f"rank{rank}.pt", weights_only=True) for rank in range(world)]
