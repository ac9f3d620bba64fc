"""Causal tracing (activation patching): which hidden states carry the answer?

Causal tracing comes from ROME (Meng et al. 2022, "Locating and Editing Factual Associations in
GPT"); "Grokked Transformers are Implicit Reasoners" (Wang et al. 2024, section 5) uses it to
find the circuit of a grokked reasoner. Two inputs that differ in one token are run through the
model: the *clean* input (e.g. ``<e_h> <r_1> <r_2>``) and a *corrupt* one with one token swapped
for another of the same type so that the answer changes (``<e_h'> <r_1> <r_2>``). Then one
hidden state of one run, at one (layer, position), is replaced by the same state from the other
run, the rest of the forward pass is recomputed, and a metric of the output is recorded. A state
that changes the output when swapped carries information the answer depends on; a state that
does not is not on the path from the swapped token to the answer.

Two directions, one function; the default, :data:`DEFAULT_DIRECTION`, is the paper's
``"noise"``, and every analysis of the library uses it unless told otherwise:

- ``direction="denoise"``: run the **corrupt** input and patch in **clean** states. This is what
  TransformerLens' ``patching.get_act_patch_*`` functions compute (``corrupted_tokens`` +
  ``clean_cache``); a state that restores the clean answer is *sufficient* to carry it.
- ``direction="noise"``: run the **clean** input and patch in **corrupt** states. This is the
  paper's direction: a state whose corruption flips the prediction is *necessary*. The paper's
  "strength" of a state is the fraction of examples whose top-1 prediction changes
  (see :mod:`grok_circuits.analysis.metrics` for the metric).

Activations that can be patched (TransformerLens hook names ``blocks.{layer}.hook_{activation}``):
the residual stream before a block (``resid_pre``), between attention and MLP (``resid_mid``),
after the block (``resid_post``), the output of the attention layer (``attn_out``) or of the MLP
(``mlp_out``), all by (layer, position); and each attention head's output before ``W_O``
(``z``, ``blocks.{layer}.attn.hook_z``), by (layer, head) over all positions or by
(layer, position, head).

How it is fast. TransformerLens' patcher runs one full forward pass per patch. This one computes
the same numbers (to float rounding; ``tests/analysis/patching/test_causal_trace.py`` checks it
against TransformerLens to 1e-5) and does only the work a patch can change, exactly:

1. *Batching*: the patches of a call are stacked along the batch dimension (each copy of an
   example carries its own patch, applied by one masked ``torch.where`` in the hook of its
   layer), so a call makes a few large forward passes instead of one pass per patch.
2. *Starting mid-way*: a patch at layer ``L`` cannot change anything below ``L``, so its rows
   start at block ``L`` from the unpatched run's residual stream (``start_at_layer``); and as
   attention is causal, positions before the first one the patch changes are not recomputed:
   the later positions attend to their stored keys and values (a frozen TransformerLens
   key-value cache) and their logits are copied. Only ``HookedTransformer`` (TransformerLens
   3.x) can: 4.x's ``TransformerBridge`` ignores ``past_kv_cache`` without an error and runs
   every block even with ``start_at_layer``, so there each patched row is a full forward pass
   (the backend's ``"midway_start"`` capability); batching and copying still apply.
   Only on the CPU, too: on a GPU the extra, smaller passes cost more than the arithmetic they
   save, and every row is a full forward pass there as well.
3. *Copying whole runs*: the two unpatched runs compute every state before the swapped token
   identically. A patch that changes nothing (the patched-in state equals the one it replaces)
   is the unpatched run, and a residual-stream patch after which the whole stream equals the
   other run's *is* the other run: both are copied, not recomputed. For ``resid_pre``, a patch
   that makes a prefix of positions equal to the other run's starts after that prefix, on the
   other run's keys and values.

The floor is the two unpatched runs (clean and corrupt), against TransformerLens'
``1 + n_layers * n_pos`` forward passes; on a CPU, where a forward pass costs its arithmetic,
the speed-up is at most about ``(1 + n_layers * n_pos) / 2`` and is largest when the swapped
token is late in the prompt (``benchmarks/causal_tracing.py``).

(2) needs a causal model with learned absolute positions (``positional_embedding_type=
"standard"``, no left-padding attention mask) and no input injection; other models take the
full forward pass with (1) and (3) only.

A recurrent-depth model (:mod:`grok_circuits.recurrence`) is traced as the blocks it runs: one
row per unrolled block, iteration ``j``'s core layer ``c`` at row ``prelude + core * j + c``
(:func:`rows_by_iteration` groups them).

Hooks are only ever added inside ``model.hooks(...)`` / ``run_with_cache(names_filter=...)``
context managers, so an exception cannot leave one behind.
"""

import functools
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass, replace
from typing import Literal

import torch
import transformer_lens.utilities as tl_utils
from jaxtyping import Bool, Float, Int
from torch import Tensor

from grok_circuits import backend
from grok_circuits.analysis.metrics import (
    Metric,
    PairMetric,
    check_metric,
    logit_difference,
    metric_label,
    metric_name,
    no_effect_error,
    prediction_changed,
    top1_predictions,
)
from grok_circuits.backend import Model
from grok_circuits.recurrence import Recurrence, recurrence_of
from grok_circuits.tasks import PromptPairs

Activation = Literal["resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z"]
Direction = Literal["denoise", "noise"]
#: The activations :func:`causal_trace` patches (``activation=``).
ACTIVATIONS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post", "attn_out", "mlp_out", "z")
DIRECTIONS: tuple[str, ...] = ("denoise", "noise")
#: The direction of every trace unless told otherwise: the paper's (corrupt states into the
#: clean run; a state whose corruption changes the prediction is necessary).
DEFAULT_DIRECTION: Direction = "noise"

#: A column of a trace: one position, or several patched together.
PositionSpec = int | Sequence[int]


@dataclass(frozen=True, eq=False)
class CausalTrace:
    """The result of :func:`causal_trace`.

    Attributes:
        scores: the metric after each patch. ``[layer, pos]`` for the residual stream,
            ``attn_out`` and ``mlp_out``; ``[layer, head]`` for ``z`` patched at all positions;
            ``[layer, pos, head]`` for ``z`` with ``per_position=True``. With
            ``per_example=True`` this is the mean over examples of :attr:`per_example`.
        activation: which activation was patched (``"resid_pre"``, ..., ``"z"``).
        direction: ``"denoise"`` (corrupt run, clean states patched in) or ``"noise"`` (clean
            run, corrupt states patched in).
        dims: the names of the axes of :attr:`scores`, e.g. ``("layer", "pos")``.
        positions: what each ``pos`` column patched: a position, or a tuple of positions
            patched together.
        pos_labels: a label per ``pos`` column for tables and plots (``"0"`` or e.g. ``"r1"``).
        baseline: the metric on the unpatched run (the corrupt input for ``"denoise"``, the
            clean input for ``"noise"``): what a patch that changes nothing scores.
        source: the metric on the run the patched states come from (the clean input for
            ``"denoise"``, the corrupt input for ``"noise"``): what patching everything scores.
        per_example: ``[*scores.shape, batch]`` values of a per-example metric, else None.
        patched_rows: how many (patch, example) pairs needed a forward pass; the others were
            copied from an unpatched run (a patch that changes nothing, or after which the
            residual stream is the other run's). TransformerLens' patcher runs them all.
        metric: the pair metric the scores measure (``"strength"`` or ``"logit_difference"``,
            from :func:`trace_pairs`; see :mod:`grok_circuits.analysis.metrics`), or None for
            the values of a metric function given to :func:`causal_trace`.
    """

    scores: Tensor
    activation: str
    direction: str
    dims: tuple[str, ...]
    positions: tuple[int | tuple[int, ...], ...]
    pos_labels: tuple[str, ...]
    baseline: float
    source: float
    per_example: Tensor | None = None
    patched_rows: int = 0
    metric: str | None = None

    @property
    def score_label(self) -> str:
        """What :attr:`scores` measure, as an axis label (:func:`~grok_circuits.analysis.metrics.
        metric_label`)."""
        return metric_label(self.metric, self.direction)

    @property
    def score_name(self) -> str:
        """A short name of what :attr:`scores` measure, for table columns (``"strength"``)."""
        return metric_name(self.metric, self.direction)

    @property
    def normalized(self) -> Tensor:
        """``(scores - baseline) / (source - baseline)``: 0 = no effect, 1 = the whole effect of
        the swap. NaN where the swap itself has no effect on the metric."""
        span = self.source - self.baseline
        if span == 0:
            return torch.full_like(self.scores, float("nan"))
        return (self.scores - self.baseline) / span

    @property
    def n_layers(self) -> int:
        return self.scores.shape[0]

    def _cell_label(self, index: tuple[int, ...]) -> str:
        if self.dims == ("layer", "head"):
            return f"L{index[0]}H{index[1]}"
        label = f"L{index[0]} {self.pos_labels[index[1]]}"
        return label + (f" H{index[2]}" if len(index) == 3 else "")

    def summary(self) -> dict:
        """The metric's baseline and source, and the patch with the largest normalized effect
        (``peak``, ``peak_at``; NaN and ``""`` when the swap has no effect)."""
        norm = self.normalized
        out = {
            "activation": self.activation,
            "direction": self.direction,
            "baseline": self.baseline,
            "source": self.source,
            "peak": math.nan,
            "peak_at": "",
        }
        if not torch.isnan(norm).all():
            flat = int(torch.nan_to_num(norm, nan=-math.inf).argmax())
            index = tuple(int(i) for i in torch.unravel_index(torch.tensor(flat), norm.shape))
            out.update(peak=float(norm[index]), peak_at=self._cell_label(index))
        return out

    def to_frame(self):
        """The scores as a pandas DataFrame: layers as rows, positions (or heads) as columns."""
        import pandas as pd

        s = self.scores
        if s.dim() == 3:  # layer pos head -> rows "L0H1"-style, columns positions
            rows = {
                f"L{layer}H{h}": s[layer, :, h].tolist()
                for layer in range(s.shape[0])
                for h in range(s.shape[2])
            }
            return pd.DataFrame.from_dict(rows, orient="index", columns=list(self.pos_labels))
        columns = (
            list(self.pos_labels) if self.dims[1] == "pos" else [f"H{h}" for h in range(s.shape[1])]
        )
        return pd.DataFrame(s.tolist(), index=[f"L{i}" for i in range(s.shape[0])], columns=columns)

    def plot(self, ax=None, *, normalized: bool = False, title: str | None = None):
        """Heatmap of the scores (layers bottom to top, like the paper's figures)."""
        from grok_circuits.viz.analysis import plot_causal_trace

        return plot_causal_trace(self, ax=ax, normalized=normalized, title=title)

    def __repr__(self) -> str:
        head = (
            f"CausalTrace({self.activation}, {self.direction}, scores {tuple(self.scores.shape)} "
            f"{self.dims}, baseline={self.baseline:.4g}, source={self.source:.4g}"
            + ("" if self.metric is None else f", metric={self.metric!r}")
            + ")"
        )
        frame = self.to_frame()
        if len(frame) > 40:  # too long to read as a table: look at .plot() or .to_frame()
            return head
        return f"{head}\n{frame.round(3).to_string()}"


# ----------------------------------------------------------------------------- the patches
@dataclass(frozen=True)
class _Cells:
    """Every patch of one call, flattened in the row-major order of the result tensor.

    A patch is a layer, a set of positions and (for ``z``) a set of heads; its mask over the
    activation's ``[pos]`` or ``[pos, head]`` axes says which entries are replaced.
    """

    layer: Int[Tensor, " cell"]
    mask: Bool[Tensor, "cell pos *head"]
    shape: tuple[int, ...]


def _columns(
    positions: Sequence[PositionSpec] | None, n_pos: int
) -> tuple[tuple[int | tuple[int, ...], ...], list[list[int]]]:
    """Validate ``positions``: labels as given (negatives resolved) and index lists."""
    if positions is None:
        return tuple(range(n_pos)), [[p] for p in range(n_pos)]
    if isinstance(positions, int | Tensor):
        positions = [int(p) for p in torch.as_tensor(positions).reshape(-1)]
    labels, cols = [], []
    for spec in positions:
        group = [spec] if isinstance(spec, int) else list(spec)
        if not group:
            raise ValueError("positions holds an empty group; give each column >= 1 position")
        resolved = []
        for p in group:
            p = int(p)
            if not -n_pos <= p < n_pos:
                raise ValueError(
                    f"position {p} is outside the prompts, which have {n_pos} positions "
                    f"(0..{n_pos - 1}, or negative from the end)"
                )
            resolved.append(p % n_pos)
        cols.append(sorted(set(resolved)))
        labels.append(resolved[0] if isinstance(spec, int) else tuple(resolved))
    if not cols:
        raise ValueError("positions is empty; pass None for every position, or some positions")
    return tuple(labels), cols


def _make_cells(
    model: Model,
    activation: str,
    cols: list[list[int]],
    n_pos: int,
    per_position: bool,
) -> tuple[_Cells, tuple[str, ...]]:
    n_layers, n_heads = model.cfg.n_layers, model.cfg.n_heads
    col_masks = torch.zeros(len(cols), n_pos, dtype=torch.bool)
    for i, c in enumerate(cols):
        col_masks[i, c] = True
    if activation != "z":
        mask = col_masks.repeat(n_layers, 1)
        layer = torch.arange(n_layers).repeat_interleave(len(cols))
        return _Cells(layer, mask, (n_layers, len(cols))), ("layer", "pos")
    eye = torch.eye(n_heads, dtype=torch.bool)
    if per_position:
        per_layer = col_masks[:, :, None, None] & eye[None, None, :, :]  # col pos head(cell) head
        per_layer = per_layer.permute(0, 2, 1, 3).reshape(-1, n_pos, n_heads)  # (col, head)
        mask = per_layer.repeat(n_layers, 1, 1)
        layer = torch.arange(n_layers).repeat_interleave(len(cols) * n_heads)
        return _Cells(layer, mask, (n_layers, len(cols), n_heads)), ("layer", "pos", "head")
    union = col_masks.any(0)  # every position of `positions` at once
    per_layer = union[None, :, None] & eye[:, None, :]  # head(cell) pos head
    mask = per_layer.repeat(n_layers, 1, 1)
    layer = torch.arange(n_layers).repeat_interleave(n_heads)
    return _Cells(layer, mask, (n_layers, n_heads)), ("layer", "head")


# ----------------------------------------------------------------------------- forward passes
def _can_start_midway(model: Model) -> bool:
    """Whether a patched run may start at block L on positions >= p (see the module docstring).

    Needs causal attention (earlier positions never read later ones), positions already inside
    the residual stream (learned absolute embeddings; rotary or shortformer models need the
    position handled inside attention) and no attention mask computed from the tokens (TL only
    builds one for left-padding tokenizers), and a backend that honours ``past_kv_cache``
    (``backend.supports("midway_start", model)``; not the 4.x ``TransformerBridge``).

    And a model on the CPU: on a GPU the saved arithmetic costs more in extra, smaller passes
    than it saves. On an H100 the whole ``benchmarks/causal_tracing.py`` table took 0.26-0.27 s
    with full forward passes against 0.44-0.49 s starting mid-way (two runs of each), and the
    paper-size model's ``trace_bridge`` 0.13-0.14 s against 0.17-0.30 s.

    And no input injection (a recurrent-depth model built with ``inject=True``): the term it
    adds at each iteration's start is kept from the run's own prelude output, which a run that
    starts after it never computes (and a run that starts at that block would add it twice)."""
    if not backend.supports("midway_start", model):
        return False
    spec = recurrence_of(model)
    if spec is not None and spec.inject:
        return False
    if next(model.parameters()).device.type != "cpu":
        return False
    cfg = model.cfg
    tokenizer = getattr(model, "tokenizer", None)
    left_padded = tokenizer is not None and getattr(tokenizer, "padding_side", None) == "left"
    return (
        cfg.positional_embedding_type == "standard"
        and getattr(cfg, "attention_dir", "causal") == "causal"
        and not left_padded
    )


@torch.no_grad()
def _record(
    model: Model,
    tokens: Int[Tensor, "batch pos"],
    names: list[str],
    batch_size: int,
) -> tuple[Float[Tensor, "batch pos d_vocab"], dict[str, Tensor]]:
    """Logits and the named activations of an unpatched run, in chunks of ``batch_size``."""
    wanted = set(names)
    logits: list[Tensor] = []
    acts: dict[str, list[Tensor]] = {n: [] for n in names}
    for i in range(0, tokens.shape[0], batch_size):
        out, cache = model.run_with_cache(
            tokens[i : i + batch_size], names_filter=lambda n: n in wanted
        )
        # TransformerLens' overloads say an Output tuple; with the default return_type it is
        # the logits
        logits.append(out)  # type: ignore[arg-type]
        for n in names:
            acts[n].append(cache[n])
    return torch.cat(logits), {n: torch.cat(v) for n, v in acts.items()}


def _patch_hook(mask: Tensor, source: Tensor):
    """A hook replacing the entries of the activation where ``mask`` is True by ``source``."""

    def hook(activation: Tensor, hook) -> Tensor:
        m = mask.view(*mask.shape, *[1] * (activation.dim() - mask.dim()))
        return torch.where(m, source, activation)

    return hook


@torch.no_grad()
def _patched_logits(
    model: Model,
    hook_name: str,
    layer: int,
    start: int,
    rows: Int[Tensor, " row"],
    mask: Bool[Tensor, "row pos *head"],
    source: Tensor,
    base: dict,
    prefix: dict,
    midway: bool,
) -> Float[Tensor, "row pos_from_start d_vocab"]:
    """Logits at positions ``>= start`` of the base run of examples ``rows``, each with its own
    patch (``mask``: which entries of the activation ``hook_name`` become ``source``).

    Mid-way, the pass starts at block ``layer`` from the base run's residual stream at positions
    ``>= start``; the earlier positions are not recomputed: their keys and values at every
    block from ``layer`` on are those of the ``prefix`` run (the base run, or the source run
    when the patch made the whole prefix equal to the source's)."""
    hook = _patch_hook(mask[:, start:], source[rows, start:])
    with model.hooks(fwd_hooks=[(hook_name, hook)]):
        if not midway:
            return model(base["tokens"][rows])
        resid = base["acts"][tl_utils.get_act_name("resid_pre", layer)][rows, start:]
        past = None
        if start > 0:  # the earlier positions' keys and values, read-only
            past = [
                (
                    prefix["acts"][tl_utils.get_act_name("k", li)][rows, :start],
                    prefix["acts"][tl_utils.get_act_name("v", li)][rows, :start],
                )
                for li in range(layer, model.cfg.n_layers)
            ]
        return backend.forward_midway(model, resid, layer, past)


def _first_true(x: Bool[Tensor, "... pos"]) -> Int[Tensor, "..."]:
    """Index of the first True along the last axis; its length where there is none."""
    return torch.where(x.any(-1), x.int().argmax(-1), x.shape[-1])


def _call_metric(metric: Metric, logits: Tensor, per_example: bool) -> Tensor:
    value = metric(logits)
    value = torch.as_tensor(value, dtype=torch.float32)
    if per_example:
        if value.shape != (logits.shape[0],):
            raise ValueError(
                f"with per_example=True the metric must return one value per example, shape "
                f"({logits.shape[0]},), but it returned shape {tuple(value.shape)}"
            )
        return value.detach().float().cpu()
    if value.numel() != 1:
        raise ValueError(
            f"the metric returned shape {tuple(value.shape)}, not a scalar; average it over the "
            "batch, or pass per_example=True if it returns one value per example"
        )
    return value.detach().float().cpu().reshape(())


# ----------------------------------------------------------------------------- the function
@torch.no_grad()
def causal_trace(
    model: Model,
    clean_tokens: Int[Tensor, "batch pos"],
    corrupt_tokens: Int[Tensor, "batch pos"],
    metric: Metric,
    *,
    activation: Activation = "resid_pre",
    direction: Direction = DEFAULT_DIRECTION,
    positions: Sequence[PositionSpec] | None = None,
    per_position: bool = True,
    per_example: bool = False,
    batch_size: int = 2048,
) -> CausalTrace:
    """Patch one activation at every (layer, position) (or head) and record ``metric``.

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge`` (put it in eval mode: dropout
            would make runs differ).
        clean_tokens: the clean prompts.
        corrupt_tokens: the corrupt prompts, same shape; usually one token swapped per example
            (:class:`grok_circuits.PromptPairs`; :func:`trace_pairs` traces those).
        metric: maps the logits of a run, ``[batch, pos, d_vocab]`` for all examples in their
            original order, to a scalar (e.g. a mean logit difference), exactly like the
            metrics of ``transformer_lens.patching``; or, with ``per_example=True``, to
            ``[batch]`` values (e.g. whether each example's top-1 prediction changed).
        activation: ``"resid_pre"``, ``"resid_mid"``, ``"resid_post"``, ``"attn_out"``,
            ``"mlp_out"`` or ``"z"`` (each attention head's output).
        direction: ``"noise"`` (default) runs the clean input and patches in corrupt states
            (the paper's direction); ``"denoise"`` runs the corrupt input and patches in clean
            states (what ``transformer_lens.patching`` computes).
        positions: the columns of the trace: each entry a position, or a list of positions
            patched together (``[0, 1, [0, 1, 2]]``). Default: every position, one at a time.
            For ``z`` with ``per_position=False``, every position listed is patched at once.
        per_position: only for ``z``: ``True`` patches each head at each position
            (``[layer, pos, head]``), ``False`` each head at all positions (``[layer, head]``).
        per_example: the metric returns one value per example; :attr:`CausalTrace.scores` is
            their mean and :attr:`CausalTrace.per_example` keeps them.
        batch_size: at most this many rows (examples x patches) per forward pass; lower it if
            memory is short.

    Returns:
        A :class:`CausalTrace`.
    """
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r} is not supported; choose one of {ACTIVATIONS}")
    if direction not in DIRECTIONS:
        raise ValueError(f"direction={direction!r}; choose 'denoise' or 'noise'")
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    clean_tokens, corrupt_tokens = torch.as_tensor(clean_tokens), torch.as_tensor(corrupt_tokens)
    if clean_tokens.dim() != 2 or clean_tokens.shape != corrupt_tokens.shape:
        raise ValueError(
            f"clean_tokens {tuple(clean_tokens.shape)} and corrupt_tokens "
            f"{tuple(corrupt_tokens.shape)} must both be [batch, pos] with the same shape: "
            "patching swaps states position by position"
        )
    if clean_tokens.shape[0] == 0:
        raise ValueError("clean_tokens holds no example")
    if activation != "z" and not per_position:
        raise ValueError("per_position=False only applies to activation='z' (heads)")

    device = model.cfg.device
    clean_tokens, corrupt_tokens = clean_tokens.to(device), corrupt_tokens.to(device)
    base_tokens, source_tokens = (
        (corrupt_tokens, clean_tokens) if direction == "denoise" else (clean_tokens, corrupt_tokens)
    )
    n_examples, n_pos = base_tokens.shape
    n_layers = model.cfg.n_layers
    labels, cols = _columns(positions, n_pos)
    cells, dims = _make_cells(model, activation, cols, n_pos, per_position)
    midway = _can_start_midway(model)

    # 1. The two unpatched runs: what gets patched in (source) and what it replaces (base).
    act_names = [tl_utils.get_act_name(activation, layer) for layer in range(n_layers)]
    kv_names = [tl_utils.get_act_name(k, i) for i in range(n_layers) for k in ("k", "v")]
    resid_names = [tl_utils.get_act_name("resid_pre", i) for i in range(n_layers)]
    full_resid = activation in ("resid_pre", "resid_mid", "resid_post")
    source_prefix = midway and activation == "resid_pre"
    base_names = act_names + (resid_names + kv_names if midway else [])
    source_names = act_names + (kv_names if source_prefix else [])
    base_logits, base_acts = _record(
        model, base_tokens, list(dict.fromkeys(base_names)), batch_size
    )
    source_logits, source_acts = _record(
        model, source_tokens, list(dict.fromkeys(source_names)), batch_size
    )
    base = {"tokens": base_tokens, "acts": base_acts}
    source = {"tokens": source_tokens, "acts": source_acts}

    # 2. Every patch of every example: skip it, copy a whole run, or recompute from a start.
    n_cells = cells.layer.shape[0]
    values = torch.empty(n_cells, n_examples) if per_example else torch.empty(n_cells)
    cells_per_pass = max(1, batch_size // n_examples)
    patched_rows = 0
    for layer in range(n_layers):
        name = act_names[layer]
        differs = source_acts[name] != base_acts[name]  # [batch, pos, *head, d]
        differs = differs.any(-1)  # [batch, pos, *head]: where the two runs' states differ
        for sub in torch.split(torch.nonzero(cells.layer == layer).flatten(), cells_per_pass):
            mask = cells.mask[sub].to(device).unsqueeze(1)  # [cell, 1, pos, *head]
            # entries the patch changes / entries that stay base although the source differs
            changed, kept = mask & differs, ~mask & differs  # [cell, batch, pos, *head]
            if activation == "z":
                changed, kept = changed.any(-1), kept.any(-1)  # [cell, batch, pos]
            active = changed.any(-1)  # [cell, batch]: False = a no-op, the base run as is
            start = _first_true(changed)  # before it, every state is the base run's
            logits = base_logits.unsqueeze(0).repeat(len(sub), 1, 1, 1)
            from_source = torch.zeros_like(active)
            if full_resid:
                # nothing kept: the patched residual stream *is* the source run's from here on
                whole = active & ~kept.any(-1)
                logits[whole] = source_logits.unsqueeze(0).expand_as(logits)[whole]
                active &= ~whole
            if source_prefix:
                # a longer prefix equal to the source run: start after it, on its keys/values
                source_start = _first_true(kept)
                from_source = source_start > start
                start = torch.where(from_source, source_start, start)
            if not midway:
                start = torch.zeros_like(start)
            cell_idx, rows = torch.nonzero(active, as_tuple=True)
            patched_rows += len(rows)
            plan = start[cell_idx, rows] * 2 + from_source[cell_idx, rows].long()
            for key in torch.unique(plan).tolist():
                begin, use_source = divmod(key, 2)
                pick = plan == key
                for c, r in zip(
                    torch.split(cell_idx[pick], batch_size), torch.split(rows[pick], batch_size)
                ):
                    out = _patched_logits(
                        model,
                        name,
                        layer,
                        begin,
                        r,
                        mask[c, 0],
                        source_acts[name],
                        base,
                        source if use_source else base,
                        midway,
                    )
                    logits[c, r, begin:] = out[:, out.shape[1] - (n_pos - begin) :]
                    if use_source:
                        logits[c, r, :begin] = source_logits[r, :begin]
            for j, cell in enumerate(sub.tolist()):
                values[cell] = _call_metric(metric, logits[j], per_example)
            del logits

    scores = values.mean(-1) if per_example else values
    return CausalTrace(
        scores=scores.reshape(cells.shape),
        activation=activation,
        direction=direction,
        dims=dims,
        positions=labels,
        pos_labels=tuple(str(p) for p in labels),
        baseline=float(_call_metric(metric, base_logits, per_example).mean()),
        source=float(_call_metric(metric, source_logits, per_example).mean()),
        per_example=values.reshape(*cells.shape, n_examples) if per_example else None,
        patched_rows=patched_rows,
    )


# ----------------------------------------------------------------------------- specialisations
def _specialise(doc: str, **fixed) -> Callable[..., CausalTrace]:
    f = functools.partial(causal_trace, **fixed)
    f.__doc__ = doc + "\n\n    See :func:`causal_trace` for the arguments and the method."
    return f


trace_resid_pre = _specialise(
    """Causal trace of the residual stream at the start of each block, by (layer, position).

    ``scores`` is ``[n_layers, pos]``; row 0 is the embeddings. The paper's causal tracing of
    hidden states (section 5) is this with ``direction="noise"``.""",
    activation="resid_pre",
)
trace_resid_mid = _specialise(
    """Causal trace of the residual stream between each block's attention and MLP, by
    (layer, position). ``scores`` is ``[n_layers, pos]``.""",
    activation="resid_mid",
)
trace_resid_post = _specialise(
    """Causal trace of the residual stream at the end of each block, by (layer, position).
    ``scores`` is ``[n_layers, pos]``; the last row patched at every position is the whole
    other run.""",
    activation="resid_post",
)
trace_attn_out = _specialise(
    """Causal trace of each attention layer's output, by (layer, position): where attention
    moves the information the answer needs. ``scores`` is ``[n_layers, pos]``.""",
    activation="attn_out",
)
trace_mlp_out = _specialise(
    """Causal trace of each MLP's output, by (layer, position): where facts are looked up
    (the paper's hops). ``scores`` is ``[n_layers, pos]``.""",
    activation="mlp_out",
)
trace_head_out = _specialise(
    """Causal trace of each attention head's output (``hook_z``), patched at all positions at
    once. ``scores`` is ``[n_layers, n_heads]``; the same as TransformerLens'
    ``get_act_patch_attn_head_out_all_pos`` for ``direction="denoise"``.""",
    activation="z",
    per_position=False,
)
trace_head_out_by_pos = _specialise(
    """Causal trace of each attention head's output (``hook_z``) at each position.
    ``scores`` is ``[n_layers, pos, n_heads]``; the same as TransformerLens'
    ``get_act_patch_attn_head_out_by_pos`` for ``direction="denoise"``.""",
    activation="z",
    per_position=True,
)


# ----------------------------------------------------------------------------- on prompt pairs
def trace_pairs(
    model: Model,
    pairs: PromptPairs,
    *,
    metric: PairMetric = "strength",
    activation: Activation = "resid_pre",
    direction: Direction = DEFAULT_DIRECTION,
    positions: Sequence[PositionSpec] | None = None,
    per_position: bool = True,
    batch_size: int = 2048,
) -> CausalTrace:
    """:func:`causal_trace` on :class:`~grok_circuits.PromptPairs` with one of the pair
    metrics of :mod:`grok_circuits.analysis.metrics`, positions labelled with the pairs'
    ``pos_labels``; the result's ``metric`` names it.

    ``metric="strength"``: for each patched state, the fraction of examples whose top-1
    prediction differs from the unpatched run's (the clean run in the default ``"noise"``
    direction). ``metric="logit_difference"``: the share of the clean-answer minus
    corrupt-answer logit difference that the patch moves (needs ``pairs.corrupt_answers``):
    the mean logit difference, minus the unpatched run's, over the other run's minus the
    unpatched run's, so that ``baseline`` is 0 and ``source`` 1 (the raw values: pass
    :func:`~grok_circuits.analysis.metrics.logit_difference` to :func:`causal_trace`).
    Per-example values are kept in ``.per_example``, on the same scale as the scores (their
    mean is the score).

    Raises:
        ValueError: for ``"logit_difference"``, when running the corrupt prompts instead of the
            clean ones does not change the mean logit difference (nothing to share out).
    """
    check_metric(metric)
    if metric == "strength":
        base = pairs.clean if direction == "noise" else pairs.corrupt
        fn = prediction_changed(pairs.answer_pos, top1_predictions(model, base, pairs.answer_pos))
    else:
        if pairs.corrupt_answers is None:
            raise ValueError(
                "metric='logit_difference' needs the corrupt answers: build the pairs with "
                "corrupt_answers=..., or use metric='strength'"
            )
        fn = logit_difference(
            pairs.answer_pos, pairs.answers, pairs.corrupt_answers, per_example=True
        )
    trace = causal_trace(
        model,
        pairs.clean,
        pairs.corrupt,
        fn,
        activation=activation,
        direction=direction,
        positions=positions,
        per_position=per_position,
        per_example=True,
        batch_size=batch_size,
    )
    labels = tuple(
        pairs.pos_labels[p] if isinstance(p, int) and p < pairs.width else str(p)
        for p in trace.positions
    )
    trace = replace(trace, pos_labels=labels, metric=metric)
    return _as_share(trace) if metric == "logit_difference" else trace


def _as_share(trace: CausalTrace) -> CausalTrace:
    """The raw logit differences of a trace as the share of the swap's effect each patch moves
    (:attr:`CausalTrace.normalized`), per example too; refused when the swap has no effect."""
    span = trace.source - trace.baseline
    if abs(span) < 1e-9:
        change = "running the corrupt prompts instead of the clean ones"
        raise no_effect_error(change, trace.baseline)
    return replace(
        trace,
        scores=(trace.scores - trace.baseline) / span,
        per_example=(
            None if trace.per_example is None else (trace.per_example - trace.baseline) / span
        ),
        baseline=0.0,
        source=1.0,
    )


#: The former name of :func:`trace_pairs`.
trace_counterfactuals = trace_pairs


def rows_by_iteration(trace: CausalTrace, spec: Recurrence) -> Float[Tensor, "iteration core ..."]:
    """The core's rows of a trace of a recurrent-depth model, grouped by iteration:
    ``out[j, c]`` is the row of iteration ``j``'s core layer ``c`` (block
    ``spec.layers(j, n)[c]``), for the count ``n`` the model ran (read off the trace's rows);
    the prelude's and the coda's rows are ``trace.scores[:spec.prelude]`` and
    ``trace.scores[trace.n_layers - spec.coda:]``.

    Args:
        trace: a causal trace of a model with the recurrence ``spec``
            (:func:`grok_circuits.recurrence.recurrence_of`).
        spec: the model's :class:`~grok_circuits.recurrence.Recurrence`.

    Returns:
        ``[iterations, core, ...]``: the trace's scores with the layer axis split.
    """
    core = trace.n_layers - spec.prelude - spec.coda
    if core < spec.core or core % spec.core:
        raise ValueError(
            f"the trace has {trace.n_layers} rows, which is not prelude={spec.prelude} + core="
            f"{spec.core} x iterations + coda={spec.coda}: trace the model with this recurrence"
        )
    rows = trace.scores[spec.prelude : spec.prelude + core]
    return rows.reshape(core // spec.core, spec.core, *rows.shape[1:])


__all__ = [
    "ACTIVATIONS",
    "rows_by_iteration",
    "DEFAULT_DIRECTION",
    "trace_counterfactuals",
    "trace_pairs",
    "DIRECTIONS",
    "Activation",
    "CausalTrace",
    "Direction",
    "Metric",
    "causal_trace",
    "trace_attn_out",
    "trace_head_out",
    "trace_head_out_by_pos",
    "trace_mlp_out",
    "trace_resid_mid",
    "trace_resid_post",
    "trace_resid_pre",
]
