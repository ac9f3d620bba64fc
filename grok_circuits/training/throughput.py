"""Measuring the training step on the device: steps per second, and the batch that fills a GPU.

:func:`training_throughput` times :func:`grok_circuits.training.loop.train_step`, the function
``train()`` calls for every step (there is no second copy of it), so what it times is what
training runs: the batch of each step, the learning-rate warm-up, the forward pass under
``cfg.precision`` and ``cfg.compile`` (:mod:`grok_circuits.training.precision`), the loss
plug-in, backward, the gradient hooks (a Grokfast run is timed with its filter), clipping unless
``grad_clip=None``, and AdamW. The model and optimizer are built as ``train()`` builds them
(``cfg.model_size``, ``cfg.seed``, ``cfg.n_loops`` or the recurrent core), and on the CPU the
steps run with ``train()``'s threads and deterministic algorithms
(:mod:`grok_circuits.training.cpu`). Not
timed: evaluation, progress measures and checkpoints, which ``train()`` adds every
``eval_every`` steps.

**The batch that fills the GPU.** At the paper's batch of 512 the paper model (prompts of 4
tokens) leaves an H100 mostly idle: the step costs its kernel launches, not its arithmetic.
:func:`batch_that_fills` doubles the batch until examples per second stop rising by ``min_gain``
and says where that happens. It only measures: a larger batch changes the recipe (fewer, larger
steps; the learning rate may want to follow), so ``batch_size`` stays the caller's choice.
"""

import dataclasses
import time
from collections.abc import Callable
from dataclasses import dataclass

import torch

from grok_circuits import backend
from grok_circuits.config import TrainConfig
from grok_circuits.model import build_model, model_config, resolve_device
from grok_circuits.recurrence import depth_overrides, recurrence_of_config
from grok_circuits.training.cpu import cpu_threads, deterministic_on_cpu
from grok_circuits.training.loop import make_optimizer, train_step
from grok_circuits.training.plugins import grad_hooks_for, loss_for
from grok_circuits.training.precision import resolve_precision, training_forward


def synchronize(device: torch.device) -> None:
    """Wait for the device's queued work (CUDA runs asynchronously), so that a timer reads it."""
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_memory_gib(device: torch.device) -> float:
    """Peak memory so far: CUDA's allocator peak on a GPU, the process's peak RSS on the CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**30
    import resource

    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def training_throughput(task, cfg: TrainConfig, *, steps: int = 20, warmup: int = 5) -> float:
    """Training steps per second of ``cfg`` on ``task``:
    :func:`~grok_circuits.training.loop.train_step` (``train()``'s step, gradient hooks and all)
    on a fresh model, timed over ``steps`` after ``warmup`` untimed ones (which include
    compiling). CUDA's peak memory statistics are reset first, so :func:`peak_memory_gib` reads
    this run's peak.

    The steps are ``train()``'s steps 1 to ``warmup + steps`` of the same seed and model: the
    same batches, learning rates and gradient hooks. On the CPU, where both run deterministic
    algorithms, they leave ``train()``'s weights bit for bit
    (``tests/training/test_throughput.py`` checks)."""
    device = resolve_device(cfg.device)
    cfg = dataclasses.replace(cfg, precision=resolve_precision(cfg.precision, device))  # as train()
    model_cfg = model_config(task, cfg.model_size, **depth_overrides(cfg))
    recurrence = recurrence_of_config(cfg, model_cfg.n_layers)
    model = build_model(model_cfg, seed=cfg.seed, device=device, recurrence=recurrence)
    optimizer = make_optimizer(model, cfg)
    forward, loss_fn, hooks = training_forward(model, cfg), loss_for(cfg), grad_hooks_for(cfg)
    params = backend.parameters(model)
    split = task.train.to(device)
    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    model.train()
    with deterministic_on_cpu(device), cpu_threads(device, cfg.threads):
        start = time.perf_counter()
        for step in range(1, warmup + steps + 1):
            if step == warmup + 1:
                synchronize(device)
                start = time.perf_counter()
            train_step(
                model,
                optimizer,
                split,
                step,
                cfg,
                forward=forward,
                loss_fn=loss_fn,
                hooks=hooks,
                params=params,
            )
        synchronize(device)
        return steps / (time.perf_counter() - start)


@dataclass(frozen=True)
class BatchSearch:
    """What :func:`batch_that_fills` measured.

    Attributes:
        batch_size: the batch that fills the device: the last one whose doubling still raised
            examples per second by at least ``min_gain`` (for ``cfg.batch_size=None``, the
            whole training set).
        batches, examples_per_second, peak_gib: each batch tried, in order, and what it gave.
        stopped: why the search ended, in words.
    """

    batch_size: int
    batches: tuple[int, ...]
    examples_per_second: tuple[float, ...]
    peak_gib: tuple[float, ...]
    stopped: str

    def to_frame(self):
        import pandas as pd

        return pd.DataFrame(
            {
                "batch_size": self.batches,
                "examples_per_second": self.examples_per_second,
                "peak_gib": self.peak_gib,
            }
        )

    def __str__(self) -> str:
        rows = [
            f"  {b:>7}  {e:>12,.0f} examples/s  {m:>7.2f} GiB"
            for b, e, m in zip(self.batches, self.examples_per_second, self.peak_gib)
        ]
        return "\n".join(
            [f"batch that fills the device: {self.batch_size} ({self.stopped})", *rows]
        )


def batch_that_fills(
    task,
    cfg: TrainConfig,
    *,
    max_batch: int = 65536,
    min_gain: float = 1.1,
    steps: int = 20,
    warmup: int = 5,
    progress: bool = True,
    measure: Callable[[int], tuple[float, float]] | None = None,
) -> BatchSearch:
    """Double ``cfg.batch_size`` until examples per second stop rising by ``min_gain`` (1.1:
    10%), the device runs out of memory, or the batch would pass ``max_batch`` or the training
    set; returns the last batch whose doubling still paid, with every measurement.

    Args:
        task: the task to train on (its ``train`` split is what batches are drawn from).
        cfg: the training config; its ``batch_size`` is where the search starts, and its
            ``device``, ``precision``, ``compile``, ``model_size``, loss and gradient hooks are
            what is timed. ``batch_size=None`` (full batch, as the modular presets train) already
            trains on the whole training set, so that one batch is measured and returned.
        steps, warmup: timed and untimed training steps per batch size
            (:func:`training_throughput`).
        measure: ``batch -> (examples per second, peak GiB)`` in place of timing training (for
            tests, or another workload).
    """
    if min_gain <= 1:
        raise ValueError(f"min_gain must be above 1 (a gain per doubling), got {min_gain}")
    rows = len(task.train)
    if cfg.batch_size is None:
        start, limit = rows, rows
        stopped = f"cfg.batch_size=None trains on the whole training set ({rows} rows) every step"
    else:
        if max_batch < cfg.batch_size:
            raise ValueError(
                f"the search starts at cfg.batch_size={cfg.batch_size} and ends at "
                f"max_batch={max_batch}; give batch_size <= max_batch"
            )
        if cfg.batch_size >= rows:
            raise ValueError(
                f"cfg.batch_size={cfg.batch_size} already covers the training set ({rows} "
                "rows): every step is the whole set, so no batch can fill more"
            )
        start, limit = cfg.batch_size, min(max_batch, rows)
        stopped = f"reached max_batch or the training set ({limit})"
    if measure is None:

        def measure(batch: int) -> tuple[float, float]:
            c = dataclasses.replace(cfg, batch_size=batch)
            rate = training_throughput(task, c, steps=steps, warmup=warmup)
            return rate * batch, peak_memory_gib(resolve_device(cfg.device))

    from tqdm.auto import tqdm

    batches, rates, peaks = [], [], []
    batch = start
    bar = tqdm(desc="batch sizes", disable=not progress, unit="batch")
    while batch <= limit:
        try:
            rate, peak = measure(batch)
        except torch.cuda.OutOfMemoryError:
            stopped = f"out of memory at batch {batch}"
            break
        finally:
            if torch.cuda.is_available():
                torch.cuda.empty_cache()
        bar.update()
        bar.set_postfix(batch=batch, examples_per_s=f"{rate:,.0f}")
        batches.append(batch)
        rates.append(rate)
        peaks.append(peak)
        if len(rates) > 1 and rates[-1] < min_gain * rates[-2]:
            stopped = f"doubling to {batch} gained {rates[-1] / rates[-2]:.3f}x < {min_gain}x"
            break
        batch *= 2
    bar.close()
    if not batches:
        raise RuntimeError(f"no batch size could be measured: {stopped}")
    fills = batches[-2] if stopped.startswith("doubling") else batches[-1]
    return BatchSearch(fills, tuple(batches), tuple(rates), tuple(peaks), stopped)


__all__ = [
    "BatchSearch",
    "batch_that_fills",
    "peak_memory_gib",
    "synchronize",
    "training_throughput",
]
