"""Circuit reuse: do two grokked skills of one model run on the same components?

Merullo et al. (2023, "Circuit Component Reuse Across Tasks in Transformer Language Models") found
that the circuits of two different tasks in GPT-2 share about 78% of their attention heads. Here
the question is put to any model and two sets of data, ``circuit_reuse(model, pairs_a,
pairs_b)``; the paper-shaped call ``circuit_reuse(model, task)`` takes a task made of two (the
mixed task: composition and comparison over one entity set, :mod:`grok_circuits.tasks.mixed`;
or two operations of modular arithmetic) and compares its sub-tasks:

1. **Circuits**: each data set's component circuit, by one circuit method
   (:func:`~grok_circuits.analysis.circuits.find.find_circuit`) with the same selection rule.
2. **Overlap**: the intersection over union (IoU) of the two component sets, and the *head share*,
   ``|heads A & heads B| / min(|heads A|, |heads B|)`` (the share of the smaller circuit's heads
   that the other circuit also uses; Merullo et al.'s "share of heads in common"). Overlap means
   little on its own: two random sets of 5 of a model's 20 components overlap too, and the smaller
   the model the more. So both are compared with a **size-matched random baseline**: ``n_random``
   pairs of random component sets with the same numbers of heads and MLPs as the two circuits;
   the report gives the baseline's mean and the fraction of random pairs that overlap at least as
   much as the circuits do (a one-sided permutation p-value).
3. **Cross-ablation**: accuracy on both tasks after ablating each task's circuit (mean or
   resample ablation,
   :mod:`grok_circuits.analysis.patching.ablation`), against ablating random component
   sets of the same size. Reuse predicts that ablating one task's circuit hurts the other task
   more than a random set of the same size does.

Nothing here is tuned after looking: the selection rule, the baseline and the ablation are fixed
by the arguments, and the report shows the random distributions next to the observed values.
"""

import math
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, check_split_fits, check_task_fits, swap_pairs
from grok_circuits.analysis.circuits.find import (
    Circuit,
    check_options,
    circuit_from_pairs,
    distinct_clean,
    method_options,
    method_pairs,
)
from grok_circuits.analysis.components import Component, all_components
from grok_circuits.analysis.metrics import PairMetric
from grok_circuits.analysis.patching.ablation import (
    Ablation,
    accuracy_under_ablation,
)
from grok_circuits.analysis.stats import iou, share_as_extreme
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs, Split, TaskData, subtasks
from grok_circuits.tasks.registry import Facts


# ----------------------------------------------------------------------------- overlap
def head_share(a: Iterable[Component], b: Iterable[Component]) -> float:
    """The share of the smaller set's attention heads that the other set also has (NaN when
    either has no head)."""
    ha, hb = {c for c in a if c.is_head}, {c for c in b if c.is_head}
    smaller = min(len(ha), len(hb))
    return len(ha & hb) / smaller if smaller else math.nan


def random_like(
    model: Model, components: Sequence[Component], rng: np.random.Generator
) -> tuple[Component, ...]:
    """A random component set with as many heads and as many MLPs as ``components``."""
    every = all_components(model)
    heads = [c for c in every if c.is_head]
    mlps = [c for c in every if not c.is_head]
    n_heads = sum(c.is_head for c in components)
    n_mlps = len(components) - n_heads
    pick = [heads[i] for i in rng.choice(len(heads), n_heads, replace=False)]
    pick += [mlps[i] for i in rng.choice(len(mlps), n_mlps, replace=False)]
    return tuple(sorted(pick, key=Component.sort_key))


# ----------------------------------------------------------------------------- the result
@dataclass(frozen=True, eq=False)
class ReuseReport:
    """What :func:`circuit_reuse` measured.

    Attributes:
        tasks: the names of the two data sets, e.g. ``("composition", "comparison")``.
        circuits: each one's :class:`Circuit`.
        iou, head_share: the observed overlap of the two circuits.
        random_iou, random_head_share: ``[n_random]`` the overlap of size-matched random pairs.
        accuracy: ``accuracy[ablated][task]``: accuracy on ``task`` after ablating ``ablated``
            (``"none"`` or a task name, meaning that task's circuit).
        random_accuracy: ``random_accuracy[like][task]``: ``[n_random_ablations]`` accuracies on
            ``task`` after ablating random sets sized like ``like``'s circuit.
        ablation: how the circuits were ablated, ``"mean"`` or ``"resample"``.
        eval_split: the probe the accuracies are measured on (``"pairs"`` for given data).
        n_eval: examples per task the accuracies are measured on.
        seed: seeds the circuits' examples, the random sets and the resample draws.
    """

    tasks: tuple[str, str]
    circuits: Mapping[str, Circuit]
    iou: float
    head_share: float
    random_iou: Float[Tensor, " n_random"]
    random_head_share: Float[Tensor, " n_random"]
    accuracy: Mapping[str, Mapping[str, float]]
    random_accuracy: Mapping[str, Mapping[str, Float[Tensor, " n_random_ablations"]]]
    ablation: str
    eval_split: str
    n_eval: Mapping[str, int]
    seed: int

    @property
    def p_iou(self) -> float:
        """Fraction of random pairs whose IoU is at least the circuits'."""
        return share_as_extreme(self.random_iou, self.iou)

    @property
    def p_head_share(self) -> float:
        """Fraction of random pairs whose head share is at least the circuits'."""
        return share_as_extreme(self.random_head_share, self.head_share)

    def overlap_frame(self):
        """Observed overlap vs the random baseline (mean, std, fraction >= observed)."""
        import pandas as pd

        rows = {}
        for name, obs, rnd, p in (
            ("IoU", self.iou, self.random_iou, self.p_iou),
            ("head share", self.head_share, self.random_head_share, self.p_head_share),
        ):
            rows[name] = {
                "observed": obs,
                "random mean": float(np.nanmean(rnd.numpy())) if len(rnd) else math.nan,
                "random std": float(np.nanstd(rnd.numpy())) if len(rnd) else math.nan,
                "P(random >= observed)": p,
            }
        return pd.DataFrame(rows).T

    def to_frame(self):
        """The cross-ablation table: accuracy on each task (columns) after ablating each set
        (rows); random rows give the mean, the std in ``"<task> std"``, and in
        ``"<task> P(<= circuit)"`` the :meth:`p_ablation` against the circuit of that size."""
        import pandas as pd

        rows = {"none": {"size": 0, **self.accuracy["none"]}}
        for t in self.tasks:
            rows[f"{t} circuit"] = {"size": len(self.circuits[t]), **self.accuracy[t]}
            rnd = self.random_accuracy[t]
            rows[f"random, size of {t} circuit"] = {
                "size": len(self.circuits[t]),
                **{u: float(rnd[u].mean()) if len(rnd[u]) else math.nan for u in self.tasks},
                **{
                    f"{u} std": float(rnd[u].std(unbiased=False)) if len(rnd[u]) else math.nan
                    for u in self.tasks
                },
                **{f"{u} P(<= circuit)": self.p_ablation(t, u) for u in self.tasks},
            }
        columns = ["size", *self.tasks, *(f"{t} std" for t in self.tasks)]
        columns += [f"{t} P(<= circuit)" for t in self.tasks]
        return pd.DataFrame(rows).T[columns]

    def p_ablation(self, ablated: str, task: str) -> float:
        """Fraction of the random sets sized like ``ablated``'s circuit whose ablation left
        ``task`` with an accuracy at most that left by ablating the circuit itself (small:
        the circuit matters to ``task`` more than its size alone explains)."""
        rnd = self.random_accuracy[ablated][task]
        if len(rnd) == 0:
            return math.nan
        return float((rnd <= self.accuracy[ablated][task] + 1e-12).double().mean())

    def summary(self) -> dict:
        """The headline numbers: the overlap and its p-values, each circuit's size, and each
        task's accuracy with nothing ablated and with the other task's circuit ablated."""
        a, b = self.tasks
        out = {
            "iou": self.iou,
            "p_iou": self.p_iou,
            "head_share": self.head_share,
            "p_head_share": self.p_head_share,
        }
        for t, other in ((a, b), (b, a)):
            out[f"size {t}"] = len(self.circuits[t])
            out[f"accuracy {t}"] = self.accuracy["none"][t]
            out[f"accuracy {t} without {other} circuit"] = self.accuracy[other][t]
        return out

    def plot(self, ax=None, *, title: str | None = None, **options):
        """Three panels: which components each circuit holds, the overlap vs the random
        baseline, and the cross-ablation bars (so no ``ax``). ``options``: ``step``. See
        :func:`grok_circuits.viz.plot_reuse`."""
        from grok_circuits.viz.circuits import plot_reuse

        return plot_reuse(self, ax, title=title, **options)

    def __str__(self) -> str:
        lines = [
            f"ReuseReport ({self.ablation} ablation, accuracy on {self.eval_split!r}, "
            f"{len(self.random_iou)} random pairs)"
        ]
        for t in self.tasks:
            c = self.circuits[t]
            lines.append(f"  {t} circuit ({len(c)}): {', '.join(map(str, c.components)) or '-'}")
        fmt = lambda x: f"{x:.3f}"  # noqa: E731
        lines.append(self.overlap_frame().to_string(float_format=fmt))
        lines.append(self.to_frame().to_string(float_format=fmt))
        return "\n".join(lines)

    __repr__ = __str__


# ----------------------------------------------------------------------------- the method
Examples = PromptPairs | Split


def _eval_examples(model: Model, given: "Examples | Sequence[PromptPairs]") -> Split:
    """The examples ``eval_a`` / ``eval_b`` name, checked to fit the model: a ``Split`` itself,
    or the distinct clean prompts of pairs."""
    if isinstance(given, Split):
        return check_split_fits(model, given)
    return distinct_clean(swap_pairs(model, given))


def _data_of(model: Model, pairs_a, pairs_b, names) -> tuple[list, tuple[str, str]]:
    """The two data sets to compare (a task made of two gives its sub-tasks) and their names."""
    if pairs_b is None:
        if not isinstance(pairs_a, TaskData):
            raise ValueError(
                "circuit_reuse(model, pairs_a, pairs_b) compares two data sets; with one, pass a "
                "task made of two (make_task('mixed'))"
            )
        views = subtasks(check_task_fits(model, pairs_a))
        if len(views) != 2:
            raise ValueError(
                f"circuit_reuse compares the circuits of two tasks of one model; the "
                f"{pairs_a.name} task is not made of two (pass pairs_a and pairs_b)"
            )
        data = list(views.values())
        if names is None:  # the registration's names: views may share their task's name
            names = tuple(views)
    else:
        data = [pairs_a, pairs_b]
    if names is None:
        names = tuple(d.name if isinstance(d, TaskData) else k for d, k in zip(data, "ab"))
        if names[0] == names[1]:
            names = ("a", "b")
    return data, tuple(names)


def circuit_reuse(
    model: Model,
    pairs_a: Data | Sequence[PromptPairs],
    pairs_b: Data | Sequence[PromptPairs] | None = None,
    *,
    eval_a: Examples | Sequence[PromptPairs] | None = None,
    eval_b: Examples | Sequence[PromptPairs] | None = None,
    names: tuple[str, str] | None = None,
    method: str | Callable[..., Circuit] = "patching",
    top_k: int | None = None,
    threshold: float | None = None,
    metric: PairMetric | None = None,
    ablation: Ablation = "mean",
    n_random: int = 1000,
    n_random_ablations: int = 20,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
    eval_split: str = "test_id",
    n_eval: int = 1000,
) -> ReuseReport:
    """Find the component circuits of two data sets on one model, compare them with a
    size-matched random baseline, and cross-ablate them. (The same question asked of edge
    circuits is :func:`~grok_circuits.analysis.edges.reuse.edge_reuse`.)

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``) that does both.
        pairs_a, pairs_b: the two data sets, each :class:`~grok_circuits.PromptPairs` (or a
            list, one per swap) or a registered task. With ``pairs_b=None``, ``pairs_a`` is a
            task made of two (``make_task("mixed")``): its sub-tasks are compared.
        eval_a, eval_b: where each task's accuracy is measured under ablation (pairs, whose
            clean prompts are used, or a ``Split``); default: the clean prompts of ``pairs_a``
            / ``pairs_b``, or for a task ``n_eval`` examples of ``eval_split``.
        names: the two data sets' names (default: the tasks', else ``("a", "b")``).
        method: the circuit method, a name in
            :data:`~grok_circuits.analysis.circuits.find.METHODS`
            (:func:`~grok_circuits.find_circuit`); or a function with ``find_circuit``'s
            signature that returns a :class:`Circuit`, e.g. circuits known in advance.
        top_k, threshold: the circuits' selection rule, the same for both (default: the
            default threshold).
        metric: the circuit method's metric (patching: ``"strength"`` unless given).
        ablation: how circuits are ablated for the cross-ablation, ``"mean"`` or
            ``"resample"`` (a method that ablates, such as ``"ablation"``, ablates the same
            way); the replacement activations come from each data set's own clean prompts
            (for a task: ``n_eval`` examples of ``split``).
        n_random: random pairs for the overlap baseline.
        n_random_ablations: random sets ablated per circuit size.
        split, n_examples, facts: for a task, where, on how many examples (per swap) and with
            which facts the circuits are found.
        seed: seeds everything random.
        eval_split, n_eval: for a task, the probe and number of examples accuracies are
            measured on.

    Returns:
        A :class:`ReuseReport`.
    """
    if n_random < 1 or n_random_ablations < 1:
        raise ValueError(
            f"n_random and n_random_ablations must be >= 1, got {n_random}, {n_random_ablations}"
        )
    data, tasks = _data_of(model, pairs_a, pairs_b, names)
    pair_kw: dict[str, Any] = dict(split=split, n_examples=n_examples, facts=facts, seed=seed)
    select: dict[str, Any] = dict(top_k=top_k, threshold=threshold)
    options: dict = {}
    if not callable(method):
        options = {} if metric is None else {"metric": metric}
        check_options(method, options)  # a metric the method does not take is refused
        # the circuit method ablates as the cross-ablation does, when it ablates at all
        if "ablation" in (method_options(method) or ("ablation",)):
            options["ablation"] = ablation
    circuits, evals, refs = {}, {}, {}
    for t, d, given_eval in zip(tasks, data, (eval_a, eval_b)):
        if callable(method):
            circuits[t] = method(model, d, metric=metric, ablation=ablation, **select, **pair_kw)
            clean = None if isinstance(d, TaskData) else _eval_examples(model, d)
        else:  # the data are converted (and checked) once, here
            sets, task = method_pairs(model, d, method, **pair_kw)
            circuits[t] = circuit_from_pairs(
                model,
                sets,
                method=method,
                options=options,
                seed=seed,
                task=task,
                split=split,
                **select,
            )
            clean = distinct_clean(sets)
        if isinstance(d, TaskData):
            if eval_split not in d.splits:
                raise ValueError(f"no probe {eval_split!r}; choose one of {d.probe_names}")
            evals[t] = d.splits[eval_split].sample(n_eval, seed)
            refs[t] = d.splits[split].sample(n_eval, seed)
        else:
            assert clean is not None  # d is pairs here, whose clean prompts were taken above
            refs[t] = evals[t] = clean
        if given_eval is not None:
            evals[t] = _eval_examples(model, given_eval)

    a, b = (circuits[t].components for t in tasks)
    rng = np.random.default_rng(seed)
    pairs = [(random_like(model, a, rng), random_like(model, b, rng)) for _ in range(n_random)]
    random_iou = torch.tensor([iou(x, y) for x, y in pairs], dtype=torch.float64)
    random_share = torch.tensor([head_share(x, y) for x, y in pairs], dtype=torch.float64)

    def acc(t: str, components: Sequence[Component]) -> float:
        return accuracy_under_ablation(
            model, evals[t], components, ablation=ablation, reference=refs[t], seed=seed
        )

    accuracy = {"none": {t: acc(t, []) for t in tasks}}
    accuracy.update({s: {t: acc(t, circuits[s].components) for t in tasks} for s in tasks})
    random_sets = {
        s: [random_like(model, circuits[s].components, rng) for _ in range(n_random_ablations)]
        for s in tasks
    }
    random_accuracy = {
        s: {t: torch.tensor([acc(t, r) for r in random_sets[s]]) for t in tasks} for s in tasks
    }
    any_task = any(isinstance(d, TaskData) for d in data)
    return ReuseReport(
        tasks=tasks,
        circuits=circuits,
        iou=iou(a, b),
        head_share=head_share(a, b),
        random_iou=random_iou,
        random_head_share=random_share,
        accuracy=accuracy,
        random_accuracy=random_accuracy,
        ablation=ablation,
        eval_split=eval_split if any_task else "pairs",
        n_eval={t: len(e) for t, e in evals.items()},
        seed=seed,
    )


__all__ = ["ReuseReport", "circuit_reuse", "head_share", "iou", "random_like"]
