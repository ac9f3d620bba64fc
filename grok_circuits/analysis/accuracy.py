"""Accuracy broken down by a property of the examples.

A probe's accuracy hides where a model fails. For comparison, the distance between the two
values says whether the model reads the values precisely (right even when they are one apart)
or only roughly (right only when they are far apart); for composition, the bridge entity or the
first relation says whether one fact is the weak link. :func:`accuracy_by` splits a probe on any
per-example label: a ``split.meta`` field, a tensor, or a function of the split.
"""

import math
from collections.abc import Callable
from dataclasses import dataclass

import torch
from torch import Tensor

from grok_circuits.analysis._inputs import check_split_fits
from grok_circuits.analysis.metrics import top1_predictions
from grok_circuits.backend import Model
from grok_circuits.tasks import Split

GroupSpec = str | Tensor | Callable[[Split], Tensor]


@dataclass(frozen=True, eq=False)
class GroupedAccuracy:
    """Top-1 accuracy per group of examples.

    Attributes:
        by: what the groups are (a meta field's name, a function's name such as
            ``"value_gap"``, or ``"group"``).
        groups: the group labels, ascending.
        accuracy: the accuracy in each group.
        counts: the number of examples in each group.
    """

    by: str
    groups: tuple[int, ...]
    accuracy: tuple[float, ...]
    counts: tuple[int, ...]

    @property
    def overall(self) -> float:
        """Accuracy over all examples (the probe's accuracy)."""
        n = sum(self.counts)
        return sum(a * c for a, c in zip(self.accuracy, self.counts)) / max(n, 1)

    def summary(self) -> dict:
        """The overall accuracy, the number of examples and groups, and the lowest and highest
        group accuracy."""
        return {
            "by": self.by,
            "overall": self.overall,
            "n": sum(self.counts),
            "n_groups": len(self.groups),
            "lowest": min(self.accuracy, default=math.nan),
            "highest": max(self.accuracy, default=math.nan),
        }

    def to_frame(self):
        """One row per group: ``n`` and ``accuracy``, indexed by the group."""
        import pandas as pd

        return pd.DataFrame(
            {"n": list(self.counts), "accuracy": list(self.accuracy)},
            index=pd.Index(list(self.groups), name=self.by),
        )

    def plot(self, ax=None, *, chance: float | None = None, title: str | None = None, label=None):
        """Accuracy per group as a line with markers; ``chance`` draws a dashed reference."""
        from grok_circuits.viz.analysis import plot_grouped_accuracy

        return plot_grouped_accuracy(self, ax, chance=chance, title=title, label=label)

    def __repr__(self) -> str:
        return (
            f"GroupedAccuracy(by={self.by!r}, {sum(self.counts)} examples, overall "
            f"{self.overall:.3f})\n{self.to_frame().round(3).to_string()}"
        )


def _labels(split: Split, by: GroupSpec) -> tuple[str, Tensor]:
    if isinstance(by, str):
        if by not in split.meta:
            raise ValueError(
                f"split has no meta field {by!r}; choose one of {sorted(split.meta)}, "
                "or pass a tensor of labels or a function of the split (for comparison: "
                "grok_circuits.tasks.value_gap)"
            )
        return by, split.meta[by]
    labels = by(split) if callable(by) else by
    name = getattr(by, "__name__", "group") if callable(by) else "group"
    if not isinstance(labels, Tensor) or labels.shape != (len(split),):
        shape = tuple(labels.shape) if isinstance(labels, Tensor) else type(labels).__name__
        raise ValueError(
            f"group labels must be a tensor with one label per example, shape ({len(split)},); "
            f"got {shape}"
        )
    return name, labels


@torch.no_grad()
def accuracy(model: Model, split: Split, *, batch_size: int = 4096) -> float:
    """Top-1 accuracy of ``model`` on ``split`` at its answer positions: the ``{probe}_acc``
    that training logs, for any split and any model, e.g. a probe a run was not trained with,
    at every checkpoint::

        over_checkpoints(run, lambda m: {p: accuracy(m, task.splits[p]) for p in probes})
    """
    if len(split) == 0:
        raise ValueError("the split is empty; accuracy needs at least one example")
    return float(_hits(model, split, batch_size).float().mean())


def _hits(model: Model, split: Split, batch_size: int) -> Tensor:
    """Whether ``model``'s top-1 prediction is the answer, per example, in eval mode (the
    model's mode is restored afterwards). A split of another task is refused."""
    check_split_fits(model, split)
    was_training = model.training
    model.eval()
    try:
        return top1_predictions(model, split.tokens, split.answer_pos, batch_size) == split.answers
    finally:
        model.train(was_training)


@torch.no_grad()
def accuracy_by(
    model: Model, split: Split, by: GroupSpec, *, batch_size: int = 4096
) -> GroupedAccuracy:
    """Top-1 accuracy of ``model`` on ``split``, per group of examples.

    Args:
        model: the model (its device is used; its train/eval mode is restored afterwards).
        split: the examples, e.g. ``task.splits["test_ood"]``.
        by: the grouping: the name of a ``split.meta`` field (``"bridge"``, ``"attribute"``,
            ...), a tensor of one integer label per example, or a function of the split
            returning one, named by its ``__name__`` (for comparison,
            :func:`grok_circuits.tasks.value_gap`: ``|value1 - value2|``).
        batch_size: examples per forward pass.

    Returns:
        A :class:`GroupedAccuracy`; ``.overall`` equals the probe accuracy that training logs.

    Example:
        >>> from grok_circuits.tasks import value_gap
        >>> accuracy_by(run.model(), run.task.splits["test_ood"], value_gap)  # doctest: +SKIP
    """
    name, labels = _labels(split, by)
    hit = _hits(model, split, batch_size)
    groups, inverse, counts = torch.unique(labels.cpu(), return_inverse=True, return_counts=True)
    hits = torch.zeros(len(groups), dtype=torch.long).index_add_(0, inverse, hit.long())
    return GroupedAccuracy(
        by=name,
        groups=tuple(int(g) for g in groups),
        accuracy=tuple((hits / counts).tolist()),
        counts=tuple(int(c) for c in counts),
    )
