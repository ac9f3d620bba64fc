"""Training on the CPU: how many threads, and deterministic kernels.

**Threads.** The number of CPU threads matters for speed only, and a lot: the tutorial models are
small, so every op synchronises torch's OpenMP threads, and a thread waiting for a core that
another process holds stalls all the others. On two cores with one of them busy, two threads
trained 14 times slower than one; on two idle cores they were 1.6 times faster.
:func:`choose_threads` therefore asks for one thread per core that is free now
(``benchmarks/threads.py`` measures it), and :func:`cpu_threads` sets it for a block.

**Determinism.** The backward pass of the embeddings accumulates gradients with ``index_put_``,
whose multi-threaded CPU kernel adds in an order that changes from run to run, so without
``torch.use_deterministic_algorithms`` two runs of one seed drift apart after a few steps. With it
(:func:`deterministic_on_cpu`), a seed gives bit-identical weights for any number of CPU threads.

:func:`grok_circuits.train` and :func:`~grok_circuits.training.throughput.training_throughput`
run their steps inside both context managers.
"""

import math
import os
import time
from collections.abc import Iterator
from contextlib import contextmanager

import torch


def choose_threads(cores: int, load: float) -> int:
    """CPU threads for training: one per core that is free, at least one.

    Args:
        cores: how many cores this process may run on (``len(os.sched_getaffinity(0))``).
        load: how many of those cores other work keeps busy (:func:`busy_cores`).

    A core counts as free when less than half of it is busy. Erring towards fewer threads is
    cheap (one thread on two idle cores is about 1.6 times slower), while a thread too many is
    not (14 times slower; see the module docstring).
    """
    if cores < 1:
        raise ValueError(f"cores must be >= 1, got {cores}")
    if load < 0:
        raise ValueError(f"load must be >= 0, got {load}")
    return max(1, min(cores, math.floor(cores - load + 0.5)))


def usable_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS reports it)."""
    if hasattr(os, "sched_getaffinity"):
        return len(os.sched_getaffinity(0))
    return os.cpu_count() or 1


def busy_cores(sample_seconds: float = 0.5) -> float:
    """How many of this process's cores other processes keep busy, from a short sample of
    ``/proc/stat`` on those cores. The 1-minute load average lags both ways (it misses a job that
    started seconds ago and still counts one that ended a minute ago: a run started right after
    the test suite trained on one thread of two idle cores), so it is used only where
    ``/proc/stat`` cannot be read, scaled to this process's share of the machine's cores."""
    sampled = _sampled_busy_cores(sample_seconds)
    if sampled is not None:
        return sampled
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else 0.0
    return load * usable_cores() / max(os.cpu_count() or 1, usable_cores())


def _sampled_busy_cores(seconds: float) -> float | None:
    def times() -> dict[str, tuple[int, int]]:  # cpu name -> (busy, total) jiffies
        out = {}
        with open("/proc/stat") as f:
            for line in f:
                name, *values = line.split()
                if name.startswith("cpu") and name != "cpu":
                    ticks = [int(v) for v in values]
                    idle = ticks[3] + ticks[4]  # idle + iowait
                    out[name] = (sum(ticks[:8]) - idle, sum(ticks[:8]))
        return out

    try:
        before = times()
        time.sleep(seconds)
        after = times()
    except (OSError, ValueError, IndexError):
        return None
    mine = (
        {f"cpu{i}" for i in os.sched_getaffinity(0)}
        if hasattr(os, "sched_getaffinity")
        else set(after)
    )
    busy = 0.0
    for cpu in mine & set(before) & set(after):
        d_busy = after[cpu][0] - before[cpu][0]
        d_total = after[cpu][1] - before[cpu][1]
        busy += d_busy / d_total if d_total > 0 else 0.0
    return busy


@contextmanager
def cpu_threads(device: torch.device, threads: int | None) -> Iterator[None]:
    """On the CPU, run the block with ``threads`` torch threads (``None``: :func:`choose_threads`
    on the free cores now) and restore the caller's setting afterwards; elsewhere, change
    nothing."""
    if device.type != "cpu":
        yield
        return
    before = torch.get_num_threads()
    torch.set_num_threads(threads or choose_threads(usable_cores(), busy_cores()))
    try:
        yield
    finally:
        torch.set_num_threads(before)


@contextmanager
def deterministic_on_cpu(device: torch.device) -> Iterator[None]:
    """On the CPU, run the block with ``torch.use_deterministic_algorithms(True)`` and restore
    the caller's setting afterwards; elsewhere, change nothing.

    Deterministic mode on CUDA also needs ``CUBLAS_WORKSPACE_CONFIG`` set before CUDA starts, so
    it is left to the user there (``torch.use_deterministic_algorithms(True)`` before training).
    """
    if device.type != "cpu":
        yield
        return
    enabled = torch.are_deterministic_algorithms_enabled()
    warn_only = torch.is_deterministic_algorithms_warn_only_enabled()
    torch.use_deterministic_algorithms(True)
    try:
        yield
    finally:
        torch.use_deterministic_algorithms(enabled, warn_only=warn_only)


__all__ = [
    "busy_cores",
    "choose_threads",
    "cpu_threads",
    "deterministic_on_cpu",
    "usable_cores",
]
