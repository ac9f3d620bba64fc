"""Progress measures: quantities logged at every evaluation that need no test set.

Test accuracy tells when a run has grokked; these are measured on training examples only, and
some of them move before test accuracy does. :func:`grok_circuits.train` logs every measure in
:data:`MEASURES` into the run's ``metrics.json`` (next to the weight norm), and
``grok-circuits report`` plots every one it finds there under the accuracy curves
(:func:`grok_circuits.viz.measures.plot_progress_measures`). All are computed on a fixed sample
of :data:`MEASURE_SIZE` examples.

The built-in measures, in the order they are logged:

- ``softmax_collapse``: the share of training examples whose float32 softmax gives the correct
  class a probability of exactly 1 (Prieto et al. 2025, "Grokking at the edge of numerical
  stability"). Such examples contribute no gradient through the loss any more, which the paper
  blames for stalled grokking without weight decay.
- ``grad_alignment``: the cosine between the negative training gradient ``-g`` and the weights
  ``w`` (all parameters as one vector). Prieto et al. call gradient descent along ``w`` (scaling
  the logits up, cos -> 1) "naive loss minimisation": it lowers the loss without changing the
  prediction.
- ``train_loss``, ``train_loss_inferred``, ``train_loss_atomic``: the training loss on the
  sample, and on its rows that are inferred facts (a ``*train_inferred`` probe) and atomic facts
  (an ``*atomic`` probe). A task whose training set has no atomic facts (modular arithmetic) logs
  no ``train_loss_atomic``. The plot draws the two parts, not their sum.
- ``lens_mid_<target>_mrr``: the logit lens at the middle layer (the residual stream after
  ``n_layers // 2`` blocks) on training inferred examples: the mean reciprocal rank of each of
  the task's registered lens targets (``register_task(lens_targets=...)``), e.g.
  ``lens_mid_bridge@r1_mrr`` for composition: the bridge entity decoded at the ``r1`` position,
  the first hop that the generalizing circuit stores mid-network (Wang et al. 2024, section 5).
  Tasks without lens targets, and one-layer models, skip it.

Computing them does not touch the model's ``.grad``, its weights or the random state, so the
training metrics and weights are those of a run without them. There is no switch in
:class:`~grok_circuits.TrainConfig`: every registered measure is logged by every run (a measure
that does not apply to a task or model returns None and logs nothing).

Adding a progress measure
-------------------------
A measure is one function with the :class:`Measure` signature, ``measure(model, data)`` ->
a float (or None where it does not apply), registered by name with a legend label and the panel
it is drawn on::

    from grok_circuits.training.progress_measures import register_measure

    def answer_logit_std(model, data):
        return float(data.logits.std())  # data: the MeasureData of this evaluation

    register_measure("answer_logit_std", answer_logit_std, label="std of answer logits",
                     axis="log")

Every later :func:`grok_circuits.train` logs the column ``answer_logit_std`` at each
evaluation, and :func:`~grok_circuits.viz.measures.plot_progress_measures` (the report) draws it
on the log panel. ``data`` holds the fixed training sample and, computed once per evaluation
and shared by every measure, the answer logits, the loss and its gradient (:class:`MeasureData`).
A measure with one value per something the task defines (as the lens MRR has one per lens
target) returns ``{key: value}`` and is registered with a column pattern, ``columns="..._{}"``.
Register measures before training: a run stores their values, not the functions.
"""

import numbers
import re
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from functools import cached_property
from itertools import cycle
from typing import TYPE_CHECKING, Literal, Protocol, runtime_checkable

import torch
import torch.nn.functional as F
from jaxtyping import Float, Int
from torch import Tensor

from grok_circuits import backend
from grok_circuits.model import answer_logits
from grok_circuits.tasks import Split, TaskData
from grok_circuits.tasks.registry import lens_targets

if TYPE_CHECKING:  # pragma: no cover - the report imports this module without TransformerLens
    from grok_circuits.backend import Model

#: Examples each measure is computed on (a fixed sample, the same at every evaluation).
MEASURE_SIZE = 512


# ----------------------------------------------------------------------------- the arithmetic
def softmax_collapse(logits: Float[Tensor, "batch vocab"], targets: Int[Tensor, " batch"]) -> float:
    """The share of examples whose float32 softmax rounds the target's probability to exactly 1."""
    p = logits.float().softmax(-1).gather(-1, targets[:, None])[:, 0]
    return float((p == 1.0).float().mean())


def gradient_alignment(grads: Sequence[Tensor], params: Sequence[Tensor]) -> float:
    """``cos(-g, w)``, with every gradient and every parameter flattened into one vector."""
    g = torch.cat([x.detach().flatten().double() for x in grads])
    w = torch.cat([x.detach().flatten().double() for x in params])
    return float(-(g @ w) / (g.norm() * w.norm()).clamp(min=1e-300))


def middle_layer(n_layers: int) -> int | None:
    """The row of the logit lens read as "the middle layer": the residual stream after
    ``n_layers // 2`` blocks; None for one-layer models, which have no middle."""
    return n_layers // 2 if n_layers >= 2 else None


@torch.no_grad()
def lens_mrr_at(
    model: "Model",
    tokens: Int[Tensor, "batch pos"],
    targets: Int[Tensor, " batch"],
    positions: Int[Tensor, " batch"],
    layer: int,
) -> float:
    """The logit-lens MRR of ``targets`` at ``positions`` in the residual stream before block
    ``layer`` (``layer == n_layers``: the final one), decoded through the final LayerNorm (with
    the state's own statistics) and the unembedding; rank 0 is the top token, ties counted in the
    target's favour. One row of :func:`grok_circuits.logit_lens`, at the cost of one forward
    pass."""
    n = model.cfg.n_layers
    name = f"blocks.{layer}.hook_resid_pre" if layer < n else f"blocks.{n - 1}.hook_resid_post"
    _, cache = model.run_with_cache(tokens, names_filter=name, stop_at_layer=min(layer + 1, n))
    rows = torch.arange(len(tokens), device=tokens.device)
    state = cache[name][rows, positions]
    if model.cfg.normalization_type is not None:
        state = model.ln_final(state)
    logits = model.unembed(state[:, None])[:, 0]
    rank = (logits > logits.gather(-1, targets[:, None])).sum(-1)
    return float((1.0 / (rank.double() + 1)).mean())


# ----------------------------------------------------------------------------- the protocol
class MeasureData:
    """What a measure reads at one evaluation of ``model``.

    Fixed for the run (the same examples at every evaluation, on the model's device):

    Attributes:
        model: the model being measured (in eval mode).
        sample: :data:`MEASURE_SIZE` training examples (seed 0).
        loss_fn: the training loss (``TrainConfig.loss``).
        kinds: ``{"inferred" | "atomic": mask over sample's rows}``, for the kinds of fact the
            training set holds.
        lens: ``{target: (tokens, targets, positions)}``: training inferred examples for each of
            the task's lens targets.

    Computed on first use, once per evaluation, and shared by the measures that read them:
    :attr:`logits`, :attr:`loss`, :attr:`params` and :attr:`grads` (one forward and one
    backward pass, which leave ``.grad`` untouched).
    """

    def __init__(self, model: "Model", sample: Split, loss_fn, kinds: dict, lens: dict):
        self.model, self.sample, self.loss_fn = model, sample, loss_fn
        self.kinds, self.lens = kinds, lens

    @cached_property
    def params(self) -> list[torch.nn.Parameter]:
        """``backend.parameters(model)``, in the order of :attr:`grads`."""
        return backend.parameters(self.model)

    @cached_property
    def _forward_backward(self) -> tuple[Tensor, Tensor, list[Tensor]]:
        with torch.enable_grad():
            logits = answer_logits(self.model, self.sample.tokens, self.sample.answer_pos)
            loss = self.loss_fn(logits, self.sample.answers)
            found = torch.autograd.grad(loss, self.params, allow_unused=True)
        grads = [torch.zeros_like(p) if g is None else g for p, g in zip(self.params, found)]
        return logits.detach(), loss.detach(), grads

    @property
    def logits(self) -> Float[Tensor, "batch vocab"]:
        """The answer-position logits on :attr:`sample` (detached)."""
        return self._forward_backward[0]

    @property
    def loss(self) -> Tensor:
        """The training loss on :attr:`sample` (a detached 0-dim tensor)."""
        return self._forward_backward[1]

    @property
    def grads(self) -> list[Tensor]:
        """The loss's gradient for each of :attr:`params` (zeros for a parameter it misses)."""
        return self._forward_backward[2]


@runtime_checkable
class Measure(Protocol):
    """A progress measure: ``measure(model, data)`` with the :class:`MeasureData` of this
    evaluation returns a float, or None where it does not apply to the task or the model. A
    measure registered with ``columns=`` returns ``{key: value}`` instead (empty: nothing to
    log). It must leave the model's weights, ``.grad`` and the random state as they were."""

    def __call__(self, model: "Model", data: MeasureData) -> float | dict[str, float] | None: ...


#: The panels a measure may be drawn on: ``"unit"`` (values in [-1, 1]: shares, cosines, MRRs;
#: linear) and ``"log"`` (positive values such as losses; log scale).
AXES = ("unit", "log")


def _column_pattern(columns: str) -> re.Pattern:
    """``"lens_mid_{}_mrr"`` -> a pattern whose group 1 is the key in a column's name."""
    prefix, suffix = columns.split("{}")
    return re.compile(re.escape(prefix) + "(.+)" + re.escape(suffix))


@dataclass(frozen=True)
class MeasureSpec:
    """A registered progress measure (:func:`register_measure`).

    Attributes:
        name: its name in :data:`MEASURES`, and its column in the metrics unless ``columns``.
        fn: the function (:class:`Measure`).
        label: its legend label (with ``{}`` for the key of a ``columns`` measure).
        axis: the panel it is drawn on (:data:`AXES`), or None: logged, not drawn.
        color: a matplotlib color, or several that a ``columns`` measure's lines take in turn;
            None: matplotlib's next color.
        linestyle: its lines' style.
        columns: for a measure returning ``{key: value}``, the column pattern with one ``{}``
            where the key goes (``"lens_mid_{}_mrr"``); None: the measure logs ``name``.
    """

    name: str
    fn: Measure
    label: str
    axis: Literal["unit", "log"] | None
    color: str | tuple[str, ...] | None = None
    linestyle: str = "-"
    columns: str | None = None

    def columns_in(self, keys) -> list[str]:
        """The columns of this measure among ``keys`` (a metrics row): ``[name]`` if there, or
        every column matching the pattern, sorted."""
        if self.columns is None:
            return [self.name] if self.name in keys else []
        pattern = _column_pattern(self.columns)
        return sorted(k for k in keys if pattern.fullmatch(k))

    def key_of(self, column: str) -> str:
        """The key a ``columns`` measure's column was logged under (the column itself
        otherwise)."""
        if self.columns is None:
            return column
        match = _column_pattern(self.columns).fullmatch(column)
        if match is None:
            raise ValueError(
                f"column {column!r} is not one of measure {self.name!r}'s; its columns match "
                f"{self.columns!r}"
            )
        return match.group(1)

    def label_of(self, column: str) -> str:
        """The legend label of ``column``."""
        return self.label if self.columns is None else self.label.format(self.key_of(column))

    def colors(self, n: int) -> list[str | None]:
        """The colors of ``n`` lines of this measure."""
        if isinstance(self.color, tuple):
            return [c for c, _ in zip(cycle(self.color), range(n))]
        return [self.color] * n


#: The progress measures by name, in the order they are logged and drawn.
MEASURES: dict[str, MeasureSpec] = {}

#: Columns the training loop writes itself, which no measure may take.
_LOOP_COLUMNS = ("step", "time", "lr", "weight_norm")


def register_measure(
    name: str,
    fn: Measure,
    *,
    label: str,
    axis: Literal["unit", "log"] | None,
    color: str | tuple[str, ...] | None = None,
    linestyle: str = "-",
    columns: str | None = None,
) -> MeasureSpec:
    """Log ``fn`` (a :class:`Measure`) at every evaluation of every later training run, and
    plot it with the other progress measures.

    Args:
        name: the measure's name, and its column in ``metrics.json`` (unless ``columns``).
        fn: ``fn(model, data) -> float | None``, with ``data`` the :class:`MeasureData`.
        label: its legend label (a ``columns`` measure: with ``{}`` for the key).
        axis: ``"unit"`` (the panel of values in [-1, 1]), ``"log"`` (the log-scale panel of
            positive values, with the losses), or None (logged, not drawn).
        color, linestyle: how its line looks (``color`` None: matplotlib's next color).
        columns: for a measure that returns ``{key: value}``, the column pattern with one
            ``{}`` for the key, e.g. ``"lens_mid_{}_mrr"``.

    Returns:
        The :class:`MeasureSpec` stored in :data:`MEASURES`.
    """
    if not name or not isinstance(name, str):
        raise ValueError(f"a progress measure needs a non-empty string name, got {name!r}")
    if name in MEASURES:
        raise ValueError(
            f"progress measure {name!r} is already registered; choose another name, or remove "
            f"the old one first with MEASURES.pop({name!r})"
        )
    if name in _LOOP_COLUMNS:
        raise ValueError(
            f"progress measure name {name!r} is a column the training loop writes itself "
            f"{_LOOP_COLUMNS}; choose another name"
        )
    if not callable(fn):
        raise ValueError(f"progress measure {name!r} must be callable, got {fn!r}")
    if not label or not isinstance(label, str):
        raise ValueError(f"progress measure {name!r} needs a non-empty string label")
    if axis is not None and axis not in AXES:
        raise ValueError(
            f"axis of progress measure {name!r} must be one of {AXES} or None, got {axis!r}"
        )
    if columns is not None and (not isinstance(columns, str) or columns.count("{}") != 1):
        raise ValueError(
            f"columns of progress measure {name!r} must be a pattern with one '{{}}' for the "
            f"key, e.g. '{name}_{{}}', got {columns!r}"
        )
    spec = MeasureSpec(name, fn, label, axis, color, linestyle, columns)
    MEASURES[name] = spec
    return spec


# ----------------------------------------------------------------------------- the built-ins
def _softmax_collapse(model: "Model", data: MeasureData) -> float:
    return softmax_collapse(data.logits, data.sample.answers)


def _grad_alignment(model: "Model", data: MeasureData) -> float:
    return gradient_alignment(data.grads, data.params)


def _train_loss(model: "Model", data: MeasureData) -> float:
    return float(data.loss)


def _train_loss_of(kind: str) -> Measure:
    def measure(model: "Model", data: MeasureData) -> float | None:
        mask = data.kinds.get(kind)
        if mask is None:
            return None
        with torch.no_grad():
            return float(data.loss_fn(data.logits[mask], data.sample.answers[mask]))

    return measure


def _lens_mid_mrr(model: "Model", data: MeasureData) -> dict[str, float]:
    layer = middle_layer(model.cfg.n_layers)
    if layer is None:
        return {}
    return {
        target: lens_mrr_at(model, tokens, targets, positions, layer)
        for target, (tokens, targets, positions) in data.lens.items()
    }


LENS_COLORS = ("tab:purple", "tab:orange", "tab:brown", "tab:cyan", "tab:pink", "tab:olive")

register_measure(
    "softmax_collapse",
    _softmax_collapse,
    label="softmax collapse (share of train)",
    axis="unit",
    color="tab:red",
)
register_measure(
    "grad_alignment",
    _grad_alignment,
    label="cos(-grad, weights)",
    axis="unit",
    color="tab:gray",
)
register_measure("train_loss", _train_loss, label="train loss", axis=None)
register_measure(
    "train_loss_inferred",
    _train_loss_of("inferred"),
    label="train loss, inferred facts",
    axis="log",
    color="tab:blue",
)
register_measure(
    "train_loss_atomic",
    _train_loss_of("atomic"),
    label="train loss, atomic facts",
    axis="log",
    color="tab:cyan",
)
register_measure(
    "lens_mid_mrr",
    _lens_mid_mrr,
    label="lens MRR {}",
    axis="unit",
    color=LENS_COLORS,
    linestyle="--",
    columns="lens_mid_{}_mrr",
)


# ----------------------------------------------------------------------------- computing them
def _row_keys(split: Split) -> list[tuple[int, ...]]:
    """Each example as (prompt up to the answer position, answer): equal rows are equal facts."""
    return [
        (*t[: int(p) + 1].tolist(), int(a))
        for t, p, a in zip(split.tokens, split.answer_pos, split.answers)
    ]


class ProgressMeasures:
    """The progress measures of one task, ready to compute at every evaluation.

    Args:
        task: the task; its training split and lens targets choose the examples.
        loss: the training loss (``TrainConfig.loss``), for the gradient and the train losses.
        size: examples per measure (a fixed sample, seed 0).
        device: where the examples live (the model's device).

    Calling it with a model returns ``{column: value}`` for every measure in :data:`MEASURES`
    that applies, in the registry's order (see the module docstring).
    """

    def __init__(
        self,
        task: TaskData,
        loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
        size: int = MEASURE_SIZE,
        device: str | torch.device = "cpu",
    ):
        if size < 1:
            raise ValueError(f"size must be >= 1, got {size}")
        self.loss = loss
        sample = task.train.sample(size, seed=0)
        keys = _row_keys(sample)
        self.kinds: dict[str, Tensor] = {}
        for kind, suffix in (("inferred", "train_inferred"), ("atomic", "atomic")):
            known = {
                k for name, s in task.splits.items() if name.endswith(suffix) for k in _row_keys(s)
            }
            mask = torch.tensor([k in known for k in keys], dtype=torch.bool)
            if mask.any():
                self.kinds[kind] = mask.to(device)
        self.sample = sample.to(device)
        self.lens: dict[str, tuple[Tensor, Tensor, Tensor]] = {}
        probe = task.splits[task.key_probes["train"]].sample(size, seed=0)
        for name, (targets, positions) in lens_targets(task, probe).items():
            self.lens[name] = (probe.tokens.to(device), targets.to(device), positions.to(device))

    def __call__(self, model: "Model") -> dict[str, float]:
        was_training = model.training
        model.eval()
        data = MeasureData(model, self.sample, self.loss, self.kinds, self.lens)
        out: dict[str, float] = {}
        try:
            for spec in list(MEASURES.values()):
                out.update(_columns(spec, spec.fn(model, data)))
        finally:
            model.train(was_training)
        return out


def _columns(spec: MeasureSpec, value) -> dict[str, float]:
    """The metrics columns of ``spec``'s ``value``: a number under its name, a ``columns``
    measure's ``{key: number}`` under its pattern; None logs nothing."""
    if value is None:
        return {}
    if spec.columns is None:
        if not isinstance(value, (numbers.Real, Tensor)):
            raise TypeError(
                f"progress measure {spec.name!r} returned {type(value).__name__}; a measure "
                "returns a float or None (one returning a dict is registered with columns=)"
            )
        return {spec.name: float(value)}
    if not isinstance(value, dict):
        raise TypeError(
            f"progress measure {spec.name!r} (columns={spec.columns!r}) returned "
            f"{type(value).__name__}; it returns {{key: float}}"
        )
    return {spec.columns.format(key): float(v) for key, v in value.items()}


def progress_measures(
    model: "Model",
    task: TaskData,
    loss: Callable[[Tensor, Tensor], Tensor] = F.cross_entropy,
    size: int = MEASURE_SIZE,
) -> dict[str, float]:
    """The progress measures of ``model`` on ``task`` (see the module docstring), e.g. for the
    checkpoints of a run trained before they were logged::

        rows = [progress_measures(run.model(s), run.task) for s in run.steps]
    """
    device = next(model.parameters()).device
    return ProgressMeasures(task, loss, size, device)(model)


__all__ = [
    "AXES",
    "MEASURES",
    "MEASURE_SIZE",
    "Measure",
    "MeasureData",
    "MeasureSpec",
    "ProgressMeasures",
    "gradient_alignment",
    "lens_mrr_at",
    "middle_layer",
    "progress_measures",
    "register_measure",
    "softmax_collapse",
]
