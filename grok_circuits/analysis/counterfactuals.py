"""Counterfactual inputs for causal tracing, and the metrics the paper reads from them.

Causal tracing (:mod:`grok_circuits.analysis.causal_tracing`) compares a *clean* input with a
*corrupt* one. Following "Grokked Transformers are Implicit Reasoners" (Wang et al. 2024,
section 5), the corrupt input swaps one token for another **of the same type** so that the
**answer changes** and the query stays a real one:

- composition ``<e_h> <r_1> <r_2>``: swap ``h`` (another head entity that has relation ``r1``,
  whose bridge has ``r2``), ``r1`` (another relation of ``h`` whose bridge has ``r2``) or ``r2``
  (another relation of the bridge). The corrupt query is answered by following the knowledge
  graph, so its answer is known; it must differ from the clean answer.
- comparison ``<attr> <q> <e1> <mask> <e2>``: swap ``e1`` or ``e2`` (another entity whose value
  makes the label ``<``/``=``/``>`` change) or ``attr`` (another attribute; its label tokens are
  its own, so the answer token always changes).

By default (``facts="id"``) the swapped query is built only from ID atomic facts (for a
comparison: entities that are ID for the attribute), so it is an in-distribution query that a
grokked model answers; ``facts="all"`` also allows OOD facts. Candidates are drawn uniformly and
reproducibly (``seed``); an example with no valid candidate is skipped.

Metrics (all take the logits ``[batch, pos, d_vocab]`` of a run, like TransformerLens' patching
metrics):

- :func:`prediction_changed`: whether the top-1 prediction at the answer position differs from a
  reference prediction (the unpatched run's). Its mean over examples is the paper's **strength**
  of a state.
- :func:`logit_difference`: logit of the clean answer minus logit of the corrupt answer.
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace
from typing import Literal

import torch
from jaxtyping import Float, Int
from torch import Tensor
from transformer_lens import HookedTransformer

from grok_circuits.analysis.causal_tracing import (
    Activation,
    CausalTrace,
    Direction,
    Metric,
    PositionSpec,
    causal_trace,
)
from grok_circuits.model import logits_at
from grok_circuits.tasks import Split, TaskData

Swap = Literal["h", "r1", "r2", "e1", "e2", "attr"]
#: The tokens that can be swapped, per task.
SWAPS: dict[str, tuple[str, ...]] = {
    "composition": ("h", "r1", "r2"),
    "comparison": ("e1", "e2", "attr"),
}
Facts = Literal["id", "all"]


@dataclass(frozen=True)
class Counterfactuals:
    """Clean prompts, their corrupt twins (one token swapped), and both answers.

    Attributes:
        clean: the clean prompts.
        corrupt: the same prompts with the token at :attr:`position` swapped.
        answer_pos: the position whose logits predict the answer.
        clean_answers: the clean answer token.
        corrupt_answers: the corrupt query's answer token (always different).
        swap: which token was swapped (``"h"``, ``"r1"``, ``"r2"``, ``"e1"``, ``"e2"``,
            ``"attr"``).
        position: the swapped position.
        position_names: the name of each prompt position (``("h", "r1", "r2")``).
        index: for each example, its row in the split it came from.
        meta: the clean examples' metadata (e.g. ``bridge``), for the same rows.
    """

    clean: Int[Tensor, "batch pos"]
    corrupt: Int[Tensor, "batch pos"]
    answer_pos: Int[Tensor, " batch"]
    clean_answers: Int[Tensor, " batch"]
    corrupt_answers: Int[Tensor, " batch"]
    swap: str
    position: int
    position_names: tuple[str, ...]
    index: Int[Tensor, " batch"]
    meta: Mapping[str, Tensor] = field(default_factory=dict)

    def __len__(self) -> int:
        return self.clean.shape[0]

    def select(self, idx: Tensor | slice) -> "Counterfactuals":
        """The examples at ``idx``."""
        return Counterfactuals(
            self.clean[idx],
            self.corrupt[idx],
            self.answer_pos[idx],
            self.clean_answers[idx],
            self.corrupt_answers[idx],
            self.swap,
            self.position,
            self.position_names,
            self.index[idx],
            {k: v[idx] for k, v in self.meta.items()},
        )

    def logit_difference(self, per_example: bool = False) -> Metric:
        """:func:`logit_difference` for these examples."""
        return logit_difference(
            self.answer_pos, self.clean_answers, self.corrupt_answers, per_example=per_example
        )

    def __repr__(self) -> str:
        return (
            f"Counterfactuals({len(self)} examples, swap={self.swap!r} at position "
            f"{self.position} ({self.position_names[self.position]}))"
        )


# ----------------------------------------------------------------------------- metrics
def prediction_changed(
    answer_pos: Int[Tensor, " batch"],
    reference: Int[Tensor, " batch"],
    per_example: bool = True,
) -> Metric:
    """A metric: 1.0 where the top-1 prediction at the answer position differs from
    ``reference``, else 0.0; its mean is the paper's strength.

    Args:
        answer_pos: the answer position of each example.
        reference: the prediction to compare with, usually the unpatched run's top-1
            (:func:`top1_predictions`).
        per_example: return ``[batch]`` values (use with ``causal_trace(per_example=True)``)
            or their mean.
    """

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        changed = logits_at(logits, answer_pos).argmax(-1) != reference.to(logits.device)
        changed = changed.float()
        return changed if per_example else changed.mean()

    return metric


def logit_difference(
    answer_pos: Int[Tensor, " batch"],
    clean_answers: Int[Tensor, " batch"],
    corrupt_answers: Int[Tensor, " batch"],
    per_example: bool = False,
) -> Metric:
    """A metric: logit of the clean answer minus logit of the corrupt answer, at the answer
    position; the mean over examples, or ``[batch]`` values with ``per_example=True``."""

    def metric(logits: Float[Tensor, "batch pos d_vocab"]) -> Tensor:
        ans = logits_at(logits, answer_pos)
        rows = torch.arange(ans.shape[0], device=ans.device)
        diff = ans[rows, clean_answers.to(ans.device)] - ans[rows, corrupt_answers.to(ans.device)]
        return diff if per_example else diff.mean()

    return metric


@torch.no_grad()
def top1_predictions(
    model: HookedTransformer,
    tokens: Int[Tensor, "batch pos"],
    answer_pos: Int[Tensor, " batch"],
    batch_size: int = 4096,
) -> Int[Tensor, " batch"]:
    """The model's top-1 token at each example's answer position."""
    device = next(model.parameters()).device
    out = []
    for i in range(0, tokens.shape[0], batch_size):
        logits = model(tokens[i : i + batch_size].to(device))
        out.append(logits_at(logits, answer_pos[i : i + batch_size]).argmax(-1).cpu())
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.long)


def trace_counterfactuals(
    model: HookedTransformer,
    cf: Counterfactuals,
    *,
    metric: Literal["strength", "logit_difference"] = "strength",
    activation: Activation = "resid_pre",
    direction: Direction = "noise",
    positions: Sequence[PositionSpec] | None = None,
    per_position: bool = True,
    batch_size: int = 2048,
) -> CausalTrace:
    """:func:`causal_trace` on counterfactuals with one of the paper's metrics.

    ``metric="strength"``: for each patched state, the fraction of examples whose top-1
    prediction differs from the unpatched run's (the clean run for ``direction="noise"``, the
    paper's setting). ``metric="logit_difference"``: mean clean-answer minus corrupt-answer
    logit. Per-example values are kept in ``.per_example``; positions are labelled with the
    task's position names.
    """
    if metric == "strength":
        base = cf.clean if direction == "noise" else cf.corrupt
        fn = prediction_changed(cf.answer_pos, top1_predictions(model, base, cf.answer_pos))
    elif metric == "logit_difference":
        fn = cf.logit_difference(per_example=True)
    else:
        raise ValueError(f"metric={metric!r}; choose 'strength' or 'logit_difference'")
    trace = causal_trace(
        model,
        cf.clean,
        cf.corrupt,
        fn,
        activation=activation,
        direction=direction,
        positions=positions,
        per_position=per_position,
        per_example=True,
        batch_size=batch_size,
    )
    labels = tuple(
        cf.position_names[p] if isinstance(p, int) and p < len(cf.position_names) else str(p)
        for p in trace.positions
    )
    return replace(trace, pos_labels=labels)


# ----------------------------------------------------------------------------- building them
def _split_of(task: TaskData, split: str | Split) -> Split:
    if isinstance(split, Split):
        return split
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {split!r}; it has {list(task.splits)}")
    return task.splits[split]


def _facts(task: TaskData, facts: Facts) -> list[Split]:
    if facts not in ("id", "all"):
        raise ValueError(f"facts={facts!r}; choose 'id' (ID atomic facts only) or 'all'")
    names = ["id_atomic"] + (["ood_atomic"] if facts == "all" else [])
    missing = [n for n in names if n not in task.splits]
    if missing:
        raise ValueError(
            f"task {task.name!r} has no {missing} split: it is needed to know the facts"
        )
    return [task.splits[n] for n in names]


def _composition_table(task: TaskData, facts: Facts) -> Tensor:
    """``table[h, r]`` = tail entity index of fact ``(h, r)``, -1 where there is none."""
    v = task.vocab
    table = torch.full((v.n_entities, v.n_relations), -1, dtype=torch.long)
    for s in _facts(task, facts):
        h = s.tokens[:, 0] - v.entity_offset
        r = s.tokens[:, 1] - v.relation_offset
        table[h, r] = s.answers - v.entity_offset
    return table


def _comparison_tables(task: TaskData, facts: Facts) -> tuple[Tensor, Tensor]:
    """``values[e, a]`` (-1 if unknown) and ``allowed[e, a]`` (the fact may be used)."""
    v = task.vocab
    values = torch.full((v.n_entities, v.n_attributes), -1, dtype=torch.long)
    allowed = torch.zeros((v.n_entities, v.n_attributes), dtype=torch.bool)
    for s in _facts(task, "all"):
        e = s.tokens[:, 0] - v.entity_offset
        a = s.tokens[:, 1] - v.attribute_offset
        values[e, a] = s.answers - v.value_offset
    for s in _facts(task, facts):
        e = s.tokens[:, 0] - v.entity_offset
        a = s.tokens[:, 1] - v.attribute_offset
        allowed[e, a] = True
    return values, allowed


def _pick(valid: Tensor, generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """One uniformly drawn True column per row of ``valid``; and which rows had any."""
    scores = torch.rand(valid.shape, generator=generator)
    scores[~valid] = -1.0
    return scores.argmax(1), valid.any(1)


def _gather(table: Tensor, rows: Tensor, cols: Tensor) -> Tensor:
    """``table[rows, cols]`` with -1 wherever a row index is -1."""
    out = table[rows.clamp(min=0), cols]
    return torch.where(rows < 0, torch.full_like(out, -1), out)


def _corrupt_composition(task, s: Split, swap, table, g) -> tuple[Tensor, Tensor, Tensor]:
    """Corrupt tokens, corrupt answers and a validity mask for a chunk of composition examples."""
    v = task.vocab
    pos = task.positions
    h = s.tokens[:, pos["h"]] - v.entity_offset
    r1 = s.tokens[:, pos["r1"]] - v.relation_offset
    r2 = s.tokens[:, pos["r2"]] - v.relation_offset
    t = s.answers - v.entity_offset
    n = len(s)
    if swap == "h":
        cand = torch.arange(v.n_entities)[None].expand(n, -1)  # h'
        bridge = table[:, r1].T  # [n, n_entities]: T[h', r1]
        answer = _gather(table, bridge, r2[:, None].expand_as(bridge))
        new_token_offset = v.entity_offset
    else:
        cand = torch.arange(v.n_relations)[None].expand(n, -1)
        if swap == "r1":
            bridge = table[h]  # [n, n_relations]: T[h, r1']
            answer = _gather(table, bridge, r2[:, None].expand_as(bridge))
        else:  # r2: from the clean bridge (kept in the metadata), else looked up
            b = s.meta["bridge"] - v.entity_offset if "bridge" in s.meta else table[h, r1]
            answer = _gather(table, b[:, None].expand_as(cand), cand)
        new_token_offset = v.relation_offset
    valid = (answer >= 0) & (answer != t[:, None])
    choice, ok = _pick(valid, g)
    corrupt = s.tokens.clone()
    corrupt[:, pos[swap]] = cand.gather(1, choice[:, None])[:, 0] + new_token_offset
    corrupt_answers = answer.gather(1, choice[:, None])[:, 0] + v.entity_offset
    return corrupt, corrupt_answers, ok


def _corrupt_comparison(task, s: Split, swap, tables, g) -> tuple[Tensor, Tensor, Tensor]:
    v = task.vocab
    values, allowed = tables
    pos = task.positions
    a = s.tokens[:, pos["attr"]] - v.attribute_offset
    e1 = s.tokens[:, pos["e1"]] - v.entity_offset
    e2 = s.tokens[:, pos["e2"]] - v.entity_offset
    label = (s.answers - v.label_offset) % 3
    n = len(s)
    corrupt = s.tokens.clone()
    if swap in ("e1", "e2"):
        cand = torch.arange(v.n_entities)[None].expand(n, -1)
        cand_values = values[:, a].T  # [n, n_entities]
        other = e2 if swap == "e1" else e1
        other_value = values[other, a][:, None]
        new_label = (
            torch.sign(cand_values - other_value)
            if swap == "e1"
            else torch.sign(other_value - cand_values)
        ) + 1
        valid = allowed[:, a].T & (cand != other[:, None]) & (new_label != label[:, None])
        choice, ok = _pick(valid, g)
        corrupt[:, pos[swap]] = choice + v.entity_offset
        answers = v.label_id(a, new_label.gather(1, choice[:, None])[:, 0])
    else:  # attr
        cand = torch.arange(v.n_attributes)[None].expand(n, -1)
        valid = allowed[e1] & allowed[e2] & (cand != a[:, None])
        choice, ok = _pick(valid, g)
        new_label = torch.sign(values[e1, choice] - values[e2, choice]) + 1
        corrupt[:, pos["attr"]] = choice + v.attribute_offset
        answers = v.label_id(choice, new_label)
    return corrupt, answers, ok


def make_counterfactuals(
    task: TaskData,
    swap: Swap,
    split: str | Split = "train_inferred",
    *,
    n_examples: int | None = None,
    facts: Facts = "id",
    seed: int = 0,
) -> Counterfactuals:
    """Corrupt inputs for the inferred examples of ``split``: one token swapped so the answer
    changes (see the module docstring).

    Args:
        task: a composition or comparison task (for a mixed task, pass
            ``grok_circuits.tasks.mixed.mixed_subtask(task, "composition")``).
        swap: the token to swap: ``"h"``, ``"r1"``, ``"r2"`` (composition) or ``"e1"``,
            ``"e2"``, ``"attr"`` (comparison).
        split: a split name (default ``"train_inferred"``, as in the paper) or a :class:`Split`
            of inferred examples of this task.
        n_examples: how many examples (drawn by ``seed``, in split order); all by default.
        facts: ``"id"`` builds the corrupt query from ID atomic facts only; ``"all"`` also from
            OOD ones.
        seed: seeds both the choice of examples and of the swapped tokens.

    Returns:
        :class:`Counterfactuals`. Examples with no valid swap are skipped; if fewer than
        ``n_examples`` have one, all that have one are returned.
    """
    if task.name not in SWAPS:
        raise ValueError(
            f"counterfactuals are defined for {sorted(SWAPS)} tasks, not {task.name!r} (for a "
            "mixed task take a sub-task view with grok_circuits.tasks.mixed.mixed_subtask)"
        )
    if swap not in SWAPS[task.name]:
        raise ValueError(
            f"swap={swap!r} is not a {task.name} token; choose one of {SWAPS[task.name]}"
        )
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1 or None, got {n_examples}")
    s = _split_of(task, split)
    infer_pos = max(task.positions.values())
    if len(s) == 0 or s.tokens.shape[1] <= infer_pos or bool((s.answer_pos != infer_pos).any()):
        raise ValueError(
            f"the split must hold inferred {task.name} queries (answer at position {infer_pos}); "
            "pass e.g. 'train_inferred', 'test_id' or 'test_ood'"
        )
    if task.name == "composition":
        tables = _composition_table(task, facts)
        corrupt_fn = _corrupt_composition
    else:
        tables = _comparison_tables(task, facts)
        corrupt_fn = _corrupt_comparison

    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(s), generator=g)
    want = len(s) if n_examples is None else n_examples
    kept, corrupt, answers = [], [], []
    n_kept, chunk = 0, min(max(256, 2 * want), 8192)  # bounds [chunk, n_candidates]
    for i in range(0, len(s), chunk):
        idx = order[i : i + chunk]
        c, a, ok = corrupt_fn(task, s.select(idx), swap, tables, g)
        kept.append(idx[ok])
        corrupt.append(c[ok])
        answers.append(a[ok])
        n_kept += int(ok.sum())
        if n_kept >= want:
            break
    idx, corrupt, answers = torch.cat(kept), torch.cat(corrupt), torch.cat(answers)
    if len(idx) == 0:
        raise ValueError(
            f"no example of this split has a valid {swap!r} swap under facts={facts!r}; try "
            "another swap, facts='all', or a larger graph"
        )
    keep = torch.argsort(idx[:want])  # back to split order
    idx, corrupt, answers = idx[:want][keep], corrupt[:want][keep], answers[:want][keep]
    clean = s.select(idx)
    names = sorted(task.positions, key=task.positions.get)
    return Counterfactuals(
        clean=clean.tokens,
        corrupt=corrupt,
        answer_pos=clean.answer_pos,
        clean_answers=clean.answers,
        corrupt_answers=answers,
        swap=swap,
        position=task.positions[swap],
        position_names=tuple(names),
        index=idx,
        meta=dict(clean.meta),
    )


__all__ = [
    "SWAPS",
    "Counterfactuals",
    "logit_difference",
    "make_counterfactuals",
    "prediction_changed",
    "top1_predictions",
    "trace_counterfactuals",
]
