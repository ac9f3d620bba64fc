"""Tracing the intermediate answer: the bridge entity of a two-hop query.

"Grokked Transformers are Implicit Reasoners" (Wang et al. 2024, section 5.2) finds the circuit
of a grokked composition model in two measurements on training inferred queries
``<e_h> <r_1> <r_2> -> <e_t>``, with bridge ``b`` (``(h, r1) -> b``, ``(b, r2) -> t``):

1. **Logit lens** (:mod:`grok_circuits.analysis.lens.logit_lens`): the MRR of ``b`` decoded at the
   ``r1`` position rises in the middle layers (the first hop is done and stored there), while
   ``r2`` stays decodable at the ``r2`` position (carried unchanged for the second hop); the
   answer ``t`` appears at the ``r2`` position in the upper layers.
2. **Causal tracing** (:mod:`grok_circuits.analysis.patching.causal_trace`, paper direction
   ``"noise"``): for each (layer, position) state of the clean run, the fraction of examples
   whose top-1 prediction changes when that state is taken from a corrupt run (**strength**).
   By default ``h`` is swapped: the corrupt query has a different bridge (its answer differs,
   so its bridge must too), so a strong state at the ``r1`` position in the upper layers is the
   bridge being carried to the output, "the link from the r1-position state to the output" that
   grows during grokking.

The data-first call is :func:`trace_reasoning`: a model and :class:`~grok_circuits.PromptPairs`
(any model, any data); it decodes every lens target of the pairs (``"bridge@r1"``, ...) and traces
the causal strength of every state. :func:`trace_bridge` is the paper's call on a composition
task; given a training :class:`~grok_circuits.runs.Run` it repeats it at every checkpoint through
:func:`~grok_circuits.analysis.over_checkpoints.over_checkpoints` (one model in memory at a
time), which shows the circuit forming: :class:`BridgeTraceOverTime`.

``bridge_layer`` is the first logit-lens row where the bridge's MRR reaches ``threshold``
(default :data:`BRIDGE_MRR_THRESHOLD` = 0.5: on average the bridge is the top token, or close;
an MRR of 0.5 needs most examples at rank 0 or 1). Row ``l`` is the input of block ``l`` (row 0
the embeddings), the last row the final residual stream.

The comparison task has the same structure with the two *values* as intermediate answers
(retrieved at the ``e1`` and ``e2`` positions); what to decode is each task's registered
knowledge (its lens targets), never a branch here.
"""

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
from jaxtyping import Float
from torch import Tensor

from grok_circuits.analysis._inputs import Data, as_pairs
from grok_circuits.analysis.lens.logit_lens import LogitLensResult, logit_lens
from grok_circuits.analysis.metrics import PairMetric
from grok_circuits.analysis.over_checkpoints import over_checkpoints
from grok_circuits.analysis.patching.causal_trace import CausalTrace, trace_pairs
from grok_circuits.analysis.results import no_axes
from grok_circuits.backend import Model
from grok_circuits.runs.run import Run
from grok_circuits.tasks import PromptPairs, Split
from grok_circuits.tasks.registry import Facts

#: Default MRR at which the bridge counts as stored (see the module docstring).
BRIDGE_MRR_THRESHOLD = 0.5
#: The lens target that makes a trace a :class:`BridgeTrace`.
BRIDGE_TARGET = "bridge@r1"


@dataclass(frozen=True, eq=False)
class ReasoningTrace:
    """Logit lens of the intermediate tokens and causal strength of every state, for one model.

    Attributes:
        lens: logit-lens ranks, one named column per (target, position), e.g. ``"bridge@r1"``.
        strength: the causal trace ``[layer, pos]`` (default direction), its scores in the
            ``metric`` it names (``strength.metric``: the share of answers changed, or of the
            logit difference removed; see :mod:`grok_circuits.analysis.metrics`).
        swap: the token swapped to build the corrupt inputs.
        n_examples: how many examples were traced.
        step: the training step of the checkpoint, when it came from a run.
    """

    lens: LogitLensResult
    strength: CausalTrace
    swap: str
    n_examples: int
    step: int | None = None

    def mrr(self, name: str) -> Float[Tensor, " layer"]:
        """MRR per logit-lens row of column ``name``."""
        return self.lens.column(name).mrr

    def summary(self) -> dict:
        """The step, the swap, the lens' best MRR per column and the strongest state (keys
        named for the metric: ``"strength peak"``, ``"logit diff removed peak"``)."""
        strength = self.strength.summary()
        name = self.strength.score_name
        return {
            "step": self.step,
            "swap": self.swap,
            "n_examples": self.n_examples,
            **{k: v for k, v in self.lens.summary().items() if k != "n_examples"},
            f"{name} peak": strength["peak"],
            f"{name} peak at": strength["peak_at"],
        }

    def to_frame(self):
        """One row per layer: the MRR of each lens column, then the score per position, in
        columns named for the metric (``"strength r1"``, ``"logit diff removed r1"``; the final
        row, the last residual stream, has no score)."""
        frame = self.lens.to_frame()
        frame.columns = [f"MRR {c}" for c in frame.columns]
        s = self.strength.scores
        name = self.strength.score_name
        for j, label in enumerate(self.strength.pos_labels):
            frame[f"{name} {label}"] = s[:, j].tolist() + [float("nan")] * (len(frame) - s.shape[0])
        return frame

    def plot(self, ax=None, *, title: str | None = None):
        """MRR curves and the strength heatmap, side by side (two panels: no ``ax``)."""
        from grok_circuits.viz.analysis import plot_reasoning_trace

        no_axes(ax, type(self).__name__, 2)
        return plot_reasoning_trace(self, title=title)

    def _header(self) -> str:
        step = "" if self.step is None else f"step {self.step}, "
        return f"{type(self).__name__}({step}{self.n_examples} examples, swap={self.swap!r})"

    def __repr__(self) -> str:
        return f"{self._header()}\n{self.to_frame().round(3).to_string()}"


@dataclass(frozen=True, eq=False)
class BridgeTrace(ReasoningTrace):
    """A :class:`ReasoningTrace` of a composition model: lens columns ``"bridge@r1"``,
    ``"r2@r2"``, ``"answer@r2"``.

    Attributes:
        threshold: the bridge MRR that defines :attr:`bridge_layer`.
    """

    threshold: float = BRIDGE_MRR_THRESHOLD

    @property
    def bridge_mrr(self) -> Float[Tensor, " layer"]:
        """MRR of the bridge entity decoded at the ``r1`` position, per layer."""
        return self.mrr("bridge@r1")

    @property
    def r2_mrr(self) -> Float[Tensor, " layer"]:
        """MRR of the ``r2`` token decoded at the ``r2`` position, per layer."""
        return self.mrr("r2@r2")

    @property
    def answer_mrr(self) -> Float[Tensor, " layer"]:
        """MRR of the answer decoded at the ``r2`` (answer) position, per layer."""
        return self.mrr("answer@r2")

    @property
    def bridge_layer(self) -> int | None:
        """The first row where :attr:`bridge_mrr` >= :attr:`threshold`, else None."""
        return self.lens.first_layer(self.threshold, "bridge@r1")

    def summary(self) -> dict:
        """:meth:`ReasoningTrace.summary` and the bridge layer at :attr:`threshold`."""
        return {**super().summary(), "bridge_layer": self.bridge_layer, "threshold": self.threshold}

    def plot(self, ax=None, *, title: str | None = None):
        """The bridge and r2 MRR curves (bridge layer marked) and the strength heatmap (two
        panels: no ``ax``)."""
        from grok_circuits.viz.analysis import plot_reasoning_trace

        no_axes(ax, type(self).__name__, 2)
        return plot_reasoning_trace(self, title=title, mark_layer=self.bridge_layer)

    def __repr__(self) -> str:
        return (
            f"{self._header()[:-1]}, bridge_layer={self.bridge_layer} at MRR >= "
            f"{self.threshold})\n{self.to_frame().round(3).to_string()}"
        )


@dataclass(frozen=True, eq=False)
class BridgeTraceOverTime:
    """:class:`BridgeTrace` summaries at several checkpoints of a run.

    Attributes:
        steps: the checkpointed steps, ascending.
        bridge_mrr, r2_mrr, answer_mrr: ``[step, layer]`` MRR (``n_layers + 1`` rows).
        strength: ``[step, layer, pos]`` causal strength.
        bridge_layer: per step, the first row where the bridge MRR >= ``threshold`` (or None).
        threshold: the bridge MRR threshold.
        pos_labels: position names of the strength columns (``("h", "r1", "r2")``).
        layer_labels: names of the MRR rows (``"0_pre"``, ..., ``"final_post"``).
        swap: the token swapped in the corrupt inputs.
        n_examples: examples traced at each step (the same ones at every step).
    """

    steps: tuple[int, ...]
    bridge_mrr: Tensor
    r2_mrr: Tensor
    answer_mrr: Tensor
    strength: Tensor
    bridge_layer: tuple[int | None, ...]
    threshold: float
    pos_labels: tuple[str, ...]
    layer_labels: tuple[str, ...]
    swap: str
    n_examples: int

    def summary(self) -> dict:
        """The checkpoints traced, the first step where a bridge layer appears, and the bridge
        layer and best bridge MRR at the last step."""
        found = [s for s, layer in zip(self.steps, self.bridge_layer) if layer is not None]
        return {
            "n_checkpoints": len(self.steps),
            "first_step": self.steps[0] if self.steps else None,
            "last_step": self.steps[-1] if self.steps else None,
            "first step with a bridge layer": found[0] if found else None,
            "bridge_layer at last step": self.bridge_layer[-1] if self.steps else None,
            "best bridge MRR at last step": (
                float(self.bridge_mrr[-1].max()) if self.steps else math.nan
            ),
            "threshold": self.threshold,
        }

    def to_frame(self):
        """One row per step: the bridge layer and the bridge MRR of every layer."""
        import pandas as pd

        frame = pd.DataFrame(
            self.bridge_mrr.tolist(),
            index=pd.Index(self.steps, name="step"),
            columns=[f"bridge MRR {label}" for label in self.layer_labels],
        )
        frame.insert(0, "bridge_layer", pd.Series(list(self.bridge_layer), self.steps, object))
        return frame

    def plot(self, ax=None, *, position: str = "r1", title: str | None = None):
        """Heatmaps over step x layer: the bridge MRR at ``r1``, and the strength at
        ``position`` (two panels: no ``ax``)."""
        from grok_circuits.viz.analysis import plot_bridge_over_time

        no_axes(ax, "BridgeTraceOverTime", 2)
        return plot_bridge_over_time(self, position=position, title=title)

    def __repr__(self) -> str:
        return (
            f"BridgeTraceOverTime({len(self.steps)} checkpoints, {self.n_examples} examples, "
            f"swap={self.swap!r}, threshold={self.threshold})\n"
            f"{self.to_frame().round(3).to_string(max_rows=20)}"
        )


# ----------------------------------------------------------------------------- computing them
def _trace(
    model: Model,
    pairs: PromptPairs,
    *,
    metric: PairMetric,
    threshold: float,
    step: int | None,
    batch_size: int,
) -> ReasoningTrace:
    """The trace of checked pairs (no conversion or checks)."""
    names = list(pairs.lens)
    if names:
        targets = torch.stack([pairs.lens[k][0] for k in names], dim=1)
        positions = torch.stack([pairs.lens[k][1] for k in names], dim=1)
    else:  # no lens target: decode the answer where it is predicted
        names = [f"answer@{pairs.pos_labels[int(pairs.answer_pos[0])]}"]
        targets, positions = pairs.answers[:, None], pairs.answer_pos[:, None]
    lens = logit_lens(model, pairs.clean, targets, positions, names=names, batch_size=batch_size)
    strength = trace_pairs(model, pairs, metric=metric, batch_size=batch_size)
    swap = pairs.swap or "pairs"
    if BRIDGE_TARGET in pairs.lens:
        return BridgeTrace(lens, strength, swap, len(pairs), step, threshold)
    return ReasoningTrace(lens, strength, swap, len(pairs), step)


def _check_threshold(threshold: float) -> None:
    if not 0.0 < threshold <= 1.0:
        raise ValueError(f"threshold is an MRR, in (0, 1]; got {threshold}")


def trace_reasoning(
    model: Model,
    data: Data,
    *,
    metric: PairMetric = "strength",
    threshold: float = BRIDGE_MRR_THRESHOLD,
    batch_size: int = 2048,
    swap: str | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> ReasoningTrace:
    """Logit lens of every lens target and the causal strength of every state, for one model.

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``).
        data: :class:`~grok_circuits.PromptPairs` (their ``lens`` targets are decoded; with
            none, the answer at the answer position), or a registered task, whose pairs are
            built with ``swap`` (default: the task's own), ``subtask``, ``split``,
            ``n_examples``, ``facts`` and ``seed``, as in
            :func:`~grok_circuits.analysis._inputs.as_pairs`.
        metric: ``"strength"`` (the paper's: the share of answers a patch changes) or
            ``"logit_difference"`` (the share of the clean-minus-corrupt logit difference a
            patch removes); see :mod:`grok_circuits.analysis.metrics`.
        threshold: the MRR that defines a :class:`BridgeTrace`'s ``bridge_layer``.
        batch_size: rows per forward pass.

    Returns:
        A :class:`BridgeTrace` when the pairs have a ``"bridge@r1"`` lens target (composition),
        else a :class:`ReasoningTrace` (comparison: ``"value1@e1"``, ``"value2@e2"``, ...).
    """
    _check_threshold(threshold)
    pairs = as_pairs(
        model,
        data,
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    return _trace(
        model, pairs, metric=metric, threshold=threshold, step=None, batch_size=batch_size
    )


def _bridge_pairs(model, data: Data | None, what: str, **pair_kw) -> PromptPairs:
    """The pairs of a bridge trace, checked once: a composition task's, or pairs with a
    ``"bridge@r1"`` lens target."""
    if data is None:
        raise ValueError(f"{what}: pass the task the model was trained on")
    pairs = as_pairs(model, data, **pair_kw)
    if BRIDGE_TARGET not in pairs.lens:
        raise ValueError(
            f"trace_bridge needs pairs with a {BRIDGE_TARGET!r} lens target (a composition "
            f"task's); these have {sorted(pairs.lens)}: use trace_reasoning"
        )
    return pairs


def _bridge_trace(
    model: Model, pairs: PromptPairs, threshold: float, batch_size: int
) -> BridgeTrace:
    """The trace of pairs from :func:`_bridge_pairs` (so a :class:`BridgeTrace`)."""
    trace = _trace(
        model, pairs, metric="strength", threshold=threshold, step=None, batch_size=batch_size
    )
    assert isinstance(trace, BridgeTrace)  # the pairs have a bridge lens target
    return trace


def trace_bridge(
    model: Model,
    data: Data | None = None,
    *,
    threshold: float = BRIDGE_MRR_THRESHOLD,
    batch_size: int = 2048,
    swap: str | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> BridgeTrace:
    """Where a composition model stores the bridge entity, and how strongly each state matters:
    the paper's call, :func:`trace_reasoning` on pairs with a ``"bridge@r1"`` lens target. Over
    a run's checkpoints: :func:`trace_bridge_over_time`.

    Args:
        model: any model (``HookedTransformer`` or ``TransformerBridge``).
        data: the composition task the model was trained on, or pairs built from it.
        threshold: bridge MRR that defines ``bridge_layer``.
        batch_size: rows per forward pass.
        swap: the token swapped for causal tracing: the task's default, ``"h"`` (it changes
            the bridge), or ``"r1"`` or ``"r2"``.
        subtask, split, n_examples, facts, seed: how pairs are drawn from a task, as everywhere
            (the paper: 300 training inferred facts, corrupt queries from ID facts).
    """
    _check_threshold(threshold)
    pairs = _bridge_pairs(
        model,
        data,
        "trace_bridge(model, task)",
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    return _bridge_trace(model, pairs, threshold, batch_size)


def trace_bridge_over_time(
    run: Run,
    data: Data | None = None,
    *,
    steps: Sequence[int] | None = None,
    progress: bool = False,
    threshold: float = BRIDGE_MRR_THRESHOLD,
    batch_size: int = 2048,
    swap: str | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> BridgeTraceOverTime:
    """:func:`trace_bridge` at every checkpoint of ``run`` (a released series included), on the
    same examples, loading one model at a time.

    Args:
        run: a training run.
        data: the composition task (default: ``run.task``), or pairs built from it.
        steps: the checkpoints to trace (default: all; others are snapped to the nearest
            checkpoint).
        progress: show a progress bar over checkpoints.
        threshold, batch_size, swap, subtask, split, n_examples, facts, seed: as in
            :func:`trace_bridge`.
    """
    _check_threshold(threshold)
    pairs = _bridge_pairs(
        run.model_cfg,  # enough to check the data against the model's shape
        run.task if data is None else data,
        "trace_bridge_over_time(run)",
        swap=swap,
        subtask=subtask,
        split=split,
        n_examples=n_examples,
        facts=facts,
        seed=seed,
    )
    traces = over_checkpoints(
        run,
        lambda m: _bridge_trace(m, pairs, threshold, batch_size),
        steps=steps,
        progress=progress,
        desc="tracing the bridge",
    )
    last = traces.results[-1]
    return BridgeTraceOverTime(
        steps=traces.steps,
        bridge_mrr=traces.stack("bridge_mrr"),
        r2_mrr=traces.stack("r2_mrr"),
        answer_mrr=traces.stack("answer_mrr"),
        strength=traces.stack(lambda t: t.strength.scores),
        bridge_layer=tuple(t.bridge_layer for t in traces.results),
        threshold=threshold,
        pos_labels=last.strength.pos_labels,
        layer_labels=last.lens.layer_labels,
        swap=pairs.swap or "pairs",
        n_examples=len(pairs),
    )


__all__ = [
    "BRIDGE_MRR_THRESHOLD",
    "BridgeTrace",
    "BridgeTraceOverTime",
    "ReasoningTrace",
    "trace_bridge",
    "trace_bridge_over_time",
    "trace_reasoning",
]
