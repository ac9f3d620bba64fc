"""Any analysis over a run's checkpoints: how a measurement changes while a model groks.

Grokking is a change over training time, so most questions are asked of every checkpoint: when
does the bridge become decodable, when does the circuit's strength move, when does the embedding's
spectrum sharpen. :func:`over_checkpoints` applies any ``fn(model) -> result`` to the checkpoints
of a :class:`~grok_circuits.runs.Run`, loading one model at a time (memory does not grow with the
number of checkpoints), skipping a damaged checkpoint with one warning, and returns an
:class:`OverCheckpoints` that stacks the per-step results and plots them over the step::

    over = over_checkpoints(run, lambda m: trace_reasoning(m, pairs))
    over.stack(lambda t: t.lens.mrr[:, 0])      # [step, layer]
    over.plot(get=lambda t: t.strength.scores.max())
"""

import gc
import math
import numbers
import warnings
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import torch
from torch import Tensor

from grok_circuits.backend import Model
from grok_circuits.runs.run import Run

Getter = str | Callable[[Any], Any]


def _get(result: Any, get: Getter | None) -> Any:
    if get is None:
        return result
    if callable(get):
        return get(result)
    if isinstance(result, dict):
        return result[get]
    return getattr(result, get)


def _as_tensor(value: Any) -> Tensor:
    if isinstance(value, Tensor):
        return value.detach().float().cpu()
    if isinstance(value, numbers.Real) or value is None:
        return torch.tensor(math.nan if value is None else float(value))
    return torch.as_tensor(value, dtype=torch.float32)


@dataclass(frozen=True, eq=False)
class OverCheckpoints:
    """The results of one analysis at several checkpoints of a run.

    Attributes:
        steps: the checkpointed steps analysed, ascending.
        results: the analysis' result at each step, in the same order.
        skipped: steps that could not be loaded (damaged checkpoints), each warned about once.
    """

    steps: tuple[int, ...]
    results: tuple[Any, ...]
    skipped: tuple[int, ...] = ()

    def __len__(self) -> int:
        return len(self.steps)

    def __getitem__(self, step: int) -> Any:
        """The result at ``step``."""
        if step not in self.steps:
            raise KeyError(f"step {step} was not analysed; the steps are {list(self.steps)}")
        return self.results[self.steps.index(step)]

    def stack(self, get: Getter | None = None) -> Tensor:
        """``[step, ...]``: a number or tensor from every result, stacked along the step.

        Args:
            get: an attribute or key name, or a function of the result (default: the result
                itself, which must then be a number or a tensor).
        """
        values = [_as_tensor(_get(r, get)) for r in self.results]
        shapes = {tuple(v.shape) for v in values}
        if len(shapes) > 1:
            raise ValueError(f"the values differ in shape across steps ({sorted(shapes)})")
        return torch.stack(values)

    def summary(self) -> dict:
        """How many checkpoints were analysed, the first and last step, and how many were
        skipped as damaged."""
        return {
            "n_checkpoints": len(self.steps),
            "first_step": self.steps[0] if self.steps else None,
            "last_step": self.steps[-1] if self.steps else None,
            "n_skipped": len(self.skipped),
        }

    def to_frame(self, get: Getter | None = None):
        """One row per step: the value of ``get`` (a number per step, or one column per entry
        of a 1-d value); with no ``get``, numbers, dicts of numbers and the ``summary()`` of
        results that have one become columns."""
        import pandas as pd

        index = pd.Index(self.steps, name="step")
        first = _get(self.results[0], get) if self.results else None
        if get is None and isinstance(first, dict):
            return pd.DataFrame([dict(r) for r in self.results], index=index)
        if get is None and callable(getattr(first, "summary", None)):
            return pd.DataFrame([r.summary() for r in self.results], index=index)
        values = self.stack(get)
        if values.dim() == 1:
            name = get if isinstance(get, str) else "value"
            return pd.DataFrame({name: values.tolist()}, index=index)
        if values.dim() == 2:
            return pd.DataFrame(values.tolist(), index=index)
        raise ValueError(
            f"to_frame needs a number or a 1-d value per step, got shape {tuple(values.shape[1:])}"
        )

    def plot(self, ax=None, *, get: Getter | None = None, title: str | None = None, label=None):
        """A line over the step for a number per step (or one line per column of a dict or
        1-d value), a step x index heatmap for a 2-d value: of ``get`` (an attribute or key
        name, or a function of each result), else of each result itself or its
        ``summary()``. See :func:`grok_circuits.viz.plot_over_checkpoints`."""
        from grok_circuits.viz.progress import plot_over_checkpoints

        if ax is not None and not hasattr(ax, "plot"):
            raise TypeError(
                f"plot's first argument is the matplotlib axes, got {type(ax).__name__}; pass "
                "what to plot by keyword: .plot(get=...)"
            )
        return plot_over_checkpoints(self, get, ax=ax, title=title, label=label)

    def __repr__(self) -> str:
        skipped = f", skipped damaged {list(self.skipped)}" if self.skipped else ""
        head = f"OverCheckpoints({len(self.steps)} checkpoints {list(self.steps)}{skipped})"
        try:
            return f"{head}\n{self.to_frame().round(4).to_string(max_rows=20)}"
        except (ValueError, TypeError, AttributeError):
            return head


def over_checkpoints(
    run: Run,
    fn: Callable[[Model], Any],
    *,
    steps: Sequence[int] | None = None,
    progress: bool = True,
    desc: str = "checkpoints",
) -> OverCheckpoints:
    """Apply ``fn(model)`` to checkpoints of ``run``, one model in memory at a time.

    Args:
        run: a training run (:func:`grok_circuits.load_run`).
        fn: any function of a ``HookedTransformer`` (in eval mode), e.g.
            ``lambda m: trace_reasoning(m, pairs)`` or ``lambda m: find_circuit(m, pairs)``.
        steps: the checkpoints to analyse (default: all; others snap to the nearest one).
        progress: show a progress bar over the checkpoints.
        desc: the progress bar's label.

    Returns:
        :class:`OverCheckpoints`. A checkpoint whose file is damaged is skipped with one warning.
    """
    if not callable(fn):
        raise ValueError(f"fn must be a function of a model, got {type(fn).__name__}")
    available = run.steps
    if not available:
        raise ValueError(f"run {run.path} has no checkpoint to analyse")
    if steps is None:
        chosen = list(available)
    else:
        chosen = sorted({run.nearest_step(int(s)) for s in steps})
        if not chosen:
            raise ValueError("steps is empty; pass None for every checkpoint")
    from tqdm.auto import tqdm

    done, results, skipped = [], [], []
    for step in tqdm(chosen, desc=desc, disable=not progress):
        try:
            with warnings.catch_warnings():
                warnings.simplefilter("ignore")  # the one warning is ours, below
                model = run.model(step)
        except ValueError as err:
            warnings.warn(f"skipping step {step}: {err}", stacklevel=2)
            skipped.append(step)
            continue
        try:
            results.append(fn(model))
        finally:
            del model  # one model at a time: memory does not grow with the checkpoints
            gc.collect()
        done.append(step)
    if not done:
        raise ValueError(f"no checkpoint of {run.path} could be loaded (damaged: {skipped})")
    return OverCheckpoints(tuple(done), tuple(results), tuple(skipped))


__all__ = ["OverCheckpoints", "over_checkpoints"]
