"""Prompt pairs: the one input type of every analysis.

Causal tracing, circuit finding, stage comparison and circuit reuse all compare a model's run on
a *clean* prompt with its run on a *corrupt* one (TransformerLens' patching takes the same two
token tensors). :class:`PromptPairs` holds both, with what the analyses read about them:

- ``clean``, ``corrupt``: token ids ``[batch, pos]``; the same width, the same answer position;
- ``answers``: the clean prompts' answer tokens; ``corrupt_answers``: the corrupt ones' (needed
  for the logit-difference metric only);
- ``answer_pos``: the position whose logits predict the answer (default: the last position);
- ``pos_labels``: a name per position (``("h", "r1", "r2")``; default ``("0", "1", ...)``);
- ``lens``: named logit-lens targets, a token and a position per example (``"bridge@r1"``);
- ``meta``: any per-example tensors (e.g. the bridge entity), carried through selections.

Anyone can build pairs from plain tensors, with no task registered::

    pairs = PromptPairs(clean=clean, corrupt=corrupt, answers=answers, corrupt_answers=other)

A registered task builds them with :func:`make_pairs` (one of its swaps applied to a split).
Pairs select (``pairs[:300]``), sample (``pairs.sample(300, seed=0)``) and concatenate
(``PromptPairs.concat([a, b])``).
"""

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from typing import Any, TypeAlias

import numpy as np
import torch
from jaxtyping import Int
from torch import Tensor

from grok_circuits.tasks.data import Split, TaskData, sample_rows
from grok_circuits.tasks.registry import Facts, lens_targets, query_positions, swaps_of, task_spec

#: What the constructor of :class:`PromptPairs` takes for a tensor of token ids or positions:
#: anything ``torch.as_tensor`` converts (it is checked and converted to int64).
IntegersLike: TypeAlias = Tensor | np.ndarray | Sequence[Any]
#: ``{name: (tokens, positions)}``, or a bare tensor of tokens for a name ``"...@<position>"``.
LensTargets: TypeAlias = Mapping[str, "tuple[IntegersLike, IntegersLike] | IntegersLike"]


def _integer(name: str, t: IntegersLike, ndim: int, shape: str) -> Tensor:
    """``t`` as an int64 tensor with ``ndim`` dimensions, or a one-line ValueError."""
    if isinstance(t, np.ndarray):
        t = torch.from_numpy(t)
    if not isinstance(t, Tensor):
        try:
            t = torch.as_tensor(t)
        except (TypeError, ValueError, RuntimeError):
            raise ValueError(
                f"PromptPairs.{name} must be an integer tensor {shape}, got {type(t).__name__}"
            ) from None
    if t.dtype.is_floating_point or t.dtype.is_complex or t.dtype == torch.bool:
        raise ValueError(
            f"PromptPairs.{name} must hold integer token ids/positions, got dtype {t.dtype}; "
            "convert with .long()"
        )
    if t.dim() != ndim:
        raise ValueError(
            f"PromptPairs.{name} must be {shape}, got shape {tuple(t.shape)}"
            + ("; for one prompt use tokens[None]" if ndim == 2 and t.dim() == 1 else "")
        )
    return t.long()


@dataclass(frozen=True, eq=False, init=False)
class PromptPairs:
    """Clean prompts, their corrupt twins, and what the analyses read about them.

    See the module docstring for the fields. Validated on construction: every field is checked
    for shape, integer dtype and range, and a mistake raises a ``ValueError`` that names the field
    and the fix. Token ids are checked against a model's vocabulary when an analysis runs. The
    constructor takes tensors, numpy arrays or nested lists and fills in the defaults, so that
    every attribute below is set.

    Attributes:
        clean, corrupt: ``[batch, pos]`` token ids.
        answers: ``[batch]`` the clean answers.
        corrupt_answers: ``[batch]`` the corrupt prompts' answers, or None.
        answer_pos: ``[batch]`` answer positions (default: the last position, ``pos - 1``).
        pos_labels: a name per position (default ``("0", "1", ...)``).
        lens: ``{name: (tokens [batch], positions [batch])}``; the constructor also accepts a
            bare tensor of tokens when the name ends in ``@<position label>``.
        meta: per-example tensors (batch dimension first).
        swap: what was swapped to make the corrupt prompts (a position label, when one).
        index: ``[batch]`` each pair's row in the data it came from (default ``0..batch-1``).
    """

    clean: Int[Tensor, "batch pos"]
    corrupt: Int[Tensor, "batch pos"]
    answers: Int[Tensor, " batch"]
    corrupt_answers: Int[Tensor, " batch"] | None
    answer_pos: Int[Tensor, " batch"]
    pos_labels: tuple[str, ...]
    lens: Mapping[str, tuple[Int[Tensor, " batch"], Int[Tensor, " batch"]]]
    meta: Mapping[str, Tensor]
    swap: str | None
    index: Int[Tensor, " batch"]

    def __init__(
        self,
        clean: IntegersLike,
        corrupt: IntegersLike,
        answers: IntegersLike,
        corrupt_answers: IntegersLike | None = None,
        answer_pos: IntegersLike | None = None,
        pos_labels: Sequence[str] | None = None,
        lens: LensTargets | None = None,
        meta: Mapping[str, Any] | None = None,
        swap: str | None = None,
        index: IntegersLike | None = None,
    ) -> None:
        set_ = lambda k, v: object.__setattr__(self, k, v)  # noqa: E731 (frozen dataclass)
        clean = _integer("clean", clean, 2, "[batch, pos]")
        corrupt = _integer("corrupt", corrupt, 2, "[batch, pos]")
        n, width = clean.shape
        if width == 0:
            raise ValueError("PromptPairs.clean has no positions; each prompt needs a token")
        if corrupt.shape != clean.shape:
            raise ValueError(
                f"PromptPairs.corrupt has shape {tuple(corrupt.shape)} but clean has "
                f"{tuple(clean.shape)}; a corrupt prompt must match its clean one token for token"
            )
        for name, t in (("clean", clean), ("corrupt", corrupt)):
            if n and int(t.min()) < 0:
                raise ValueError(f"PromptPairs.{name} has a negative token id ({int(t.min())})")

        def vector(name: str, value: IntegersLike) -> Tensor:
            v = _integer(name, value, 1, "[batch]")
            if v.shape[0] != n:
                raise ValueError(f"PromptPairs.{name} has {v.shape[0]} rows but clean has {n}")
            return v

        set_("clean", clean)
        set_("corrupt", corrupt)
        answers = vector("answers", answers)
        if n and int(answers.min()) < 0:
            raise ValueError("PromptPairs.answers has a negative token id")
        set_("answers", answers)
        set_(
            "corrupt_answers",
            None if corrupt_answers is None else vector("corrupt_answers", corrupt_answers),
        )
        if answer_pos is None:
            set_("answer_pos", torch.full((n,), width - 1, dtype=torch.long))
        else:
            pos = vector("answer_pos", answer_pos)
            if n and (int(pos.min()) < 0 or int(pos.max()) >= width):
                raise ValueError(
                    f"PromptPairs.answer_pos must lie in 0..{width - 1} (the prompts have {width} "
                    f"positions), got values {int(pos.min())}..{int(pos.max())}"
                )
            set_("answer_pos", pos)
        labels = tuple(str(i) for i in range(width)) if pos_labels is None else pos_labels
        if isinstance(labels, str) or len(labels) != width:
            raise ValueError(
                f"PromptPairs.pos_labels needs one name per position ({width}), got {labels!r}"
            )
        set_("pos_labels", tuple(str(x) for x in labels))
        set_("lens", {k: self._lens_target(k, v) for k, v in dict(lens or {}).items()})
        checked_meta = {}
        for k, v in dict(meta or {}).items():
            v = torch.as_tensor(v)
            if v.dim() == 0 or v.shape[0] != n:
                raise ValueError(f"PromptPairs.meta[{k!r}] must have {n} rows (one per pair)")
            checked_meta[k] = v
        set_("meta", checked_meta)
        set_("swap", swap)
        set_("index", torch.arange(n) if index is None else vector("index", index))

    def _lens_target(
        self, name: str, value: "tuple[IntegersLike, IntegersLike] | IntegersLike"
    ) -> tuple[Tensor, Tensor]:
        n, width = self.clean.shape
        if isinstance(value, tuple | list) and len(value) == 2:
            tokens, positions = value
            positions = torch.as_tensor(positions)
            if positions.dim() == 0:
                positions = positions.expand(n)
        else:
            tokens, label = value, name.rpartition("@")[2]
            if "@" not in name or label not in self.pos_labels:
                raise ValueError(
                    f"PromptPairs.lens[{name!r}] is a bare tensor of tokens, so its name must end "
                    f"in '@<position>' with a position from {self.pos_labels}; or pass "
                    "(tokens, positions)"
                )
            positions = torch.full((n,), self.pos_labels.index(label), dtype=torch.long)
        tokens = _integer(f"lens[{name!r}] tokens", tokens, 1, "[batch]")
        positions = _integer(f"lens[{name!r}] positions", positions, 1, "[batch]")
        if tokens.shape[0] != n or positions.shape[0] != n:
            raise ValueError(f"PromptPairs.lens[{name!r}] needs {n} tokens and positions")
        if n and (int(positions.min()) < 0 or int(positions.max()) >= width):
            raise ValueError(f"PromptPairs.lens[{name!r}] positions must lie in 0..{width - 1}")
        return tokens, positions

    # ------------------------------------------------------------------ views
    def __len__(self) -> int:
        return self.clean.shape[0]

    @property
    def width(self) -> int:
        """Tokens per prompt."""
        return self.clean.shape[1]

    @property
    def position(self) -> int | None:
        """The swapped position, when :attr:`swap` names one."""
        return self.pos_labels.index(self.swap) if self.swap in self.pos_labels else None

    @property
    def clean_answers(self) -> Tensor:
        """The clean answers (the same tensor as :attr:`answers`)."""
        return self.answers

    @property
    def position_names(self) -> tuple[str, ...]:
        """The position labels (the same as :attr:`pos_labels`)."""
        return self.pos_labels

    @property
    def positions(self) -> dict[str, int]:
        """``{label: position}``."""
        return {label: i for i, label in enumerate(self.pos_labels)}

    def __getitem__(self, index) -> "PromptPairs":
        """The pairs at ``index``: a slice, an index tensor or list, or a boolean mask."""
        if isinstance(index, int):
            index = slice(index, index + 1 if index != -1 else None)
        if isinstance(index, np.ndarray | list):
            index = torch.as_tensor(index)
        pick = lambda t: None if t is None else t[index]  # noqa: E731
        return replace(
            self,
            clean=self.clean[index],
            corrupt=self.corrupt[index],
            answers=self.answers[index],
            corrupt_answers=pick(self.corrupt_answers),
            answer_pos=self.answer_pos[index],
            lens={k: (t[index], p[index]) for k, (t, p) in self.lens.items()},
            meta={k: v[index] for k, v in self.meta.items()},
            index=self.index[index],
        )

    select = __getitem__

    def sample(self, n: int, seed: int = 0) -> "PromptPairs":
        """At most ``n`` pairs, drawn without replacement by ``seed``, in their order here."""
        if n < 0:
            raise ValueError(f"sample(n): n must be >= 0, got {n}")
        idx = sample_rows(len(self), n, seed)
        return self if idx is None else self[idx]

    @classmethod
    def concat(cls, pairs: Sequence["PromptPairs"]) -> "PromptPairs":
        """Stack pairs of one prompt width and position labels (lens targets and metadata
        present in all are kept; ``swap`` is kept when all agree)."""
        pairs = list(pairs)
        if not pairs:
            raise ValueError("PromptPairs.concat needs at least one PromptPairs")
        first = pairs[0]
        for p in pairs[1:]:
            if p.pos_labels != first.pos_labels:
                raise ValueError(
                    f"cannot concatenate pairs with positions {first.pos_labels} and "
                    f"{p.pos_labels}; build them with one prompt layout"
                )
        cat = lambda ts: torch.cat(list(ts))  # noqa: E731
        with_corrupt = all(p.corrupt_answers is not None for p in pairs)
        lens = set.intersection(*(set(p.lens) for p in pairs))
        meta = set.intersection(*(set(p.meta) for p in pairs))
        swaps = {p.swap for p in pairs}
        return cls(
            clean=cat(p.clean for p in pairs),
            corrupt=cat(p.corrupt for p in pairs),
            answers=cat(p.answers for p in pairs),
            corrupt_answers=cat(p.corrupt_answers for p in pairs) if with_corrupt else None,
            answer_pos=cat(p.answer_pos for p in pairs),
            pos_labels=first.pos_labels,
            lens={
                k: (cat(p.lens[k][0] for p in pairs), cat(p.lens[k][1] for p in pairs))
                for k in sorted(lens)
            },
            meta={k: cat(p.meta[k] for p in pairs) for k in sorted(meta)},
            swap=swaps.pop() if len(swaps) == 1 else None,
            index=cat(p.index for p in pairs),
        )

    def to(self, device: str | torch.device) -> "PromptPairs":
        move = lambda t: t.to(device)  # noqa: E731
        return replace(
            self,
            clean=move(self.clean),
            corrupt=move(self.corrupt),
            answers=move(self.answers),
            corrupt_answers=None if self.corrupt_answers is None else move(self.corrupt_answers),
            answer_pos=move(self.answer_pos),
            lens={k: (move(t), move(p)) for k, (t, p) in self.lens.items()},
            meta={k: move(v) for k, v in self.meta.items()},
            index=move(self.index),
        )

    def clean_split(self) -> Split:
        """The clean prompts as a :class:`Split` (for accuracy and ablation)."""
        return Split(self.clean, self.answer_pos, self.answers, dict(self.meta))

    @classmethod
    def from_split(cls, split: Split, pos_labels: Sequence[str] | None = None) -> "PromptPairs":
        """Pairs whose corrupt prompt is the clean one: for the methods that need examples but
        no counterfactual (ablation, accuracy)."""
        return cls(
            clean=split.tokens,
            corrupt=split.tokens,
            answers=split.answers,
            corrupt_answers=split.answers,
            answer_pos=split.answer_pos,
            pos_labels=None if pos_labels is None else tuple(pos_labels),
            meta=dict(split.meta),
        )

    def __repr__(self) -> str:
        swap = "" if self.swap is None else f", swap={self.swap!r}"
        at = "" if self.position is None else f" at position {self.position}"
        lens = f", lens {sorted(self.lens)}" if self.lens else ""
        return (
            f"PromptPairs({len(self)} pairs of {self.width} tokens {self.pos_labels}{swap}{at}"
            f"{lens})"
        )


#: The former name of :class:`PromptPairs`.
Counterfactuals = PromptPairs


# ----------------------------------------------------------------------------- from a task
def _split_of(task: TaskData, split: str | Split) -> Split:
    if isinstance(split, Split):
        return split
    if split not in task.splits:
        raise ValueError(f"task {task.name!r} has no split {split!r}; it has {list(task.splits)}")
    return task.splits[split]


def position_labels(task: TaskData, width: int) -> tuple[str, ...]:
    """Labels of ``width`` prompt positions: the task's position names, else the index."""
    names = {v: k for k, v in task.positions.items()}
    return tuple(names.get(i, str(i)) for i in range(width))


def make_pairs(
    task: TaskData,
    swap: str | None = None,
    split: str | Split = "train_inferred",
    *,
    n_examples: int | None = None,
    facts: Facts = "id",
    seed: int = 0,
) -> PromptPairs:
    """Counterfactual pairs for the examples of ``split``, by one of the task's swaps.

    Args:
        task: a registered task (for a mixed task, one sub-task's view).
        swap: which of the task's registered swaps (default: its ``default_swap``).
        split: a split name (default ``"train_inferred"``, as in the paper) or a :class:`Split`
            of the queries the swap applies to.
        n_examples: how many pairs (examples drawn by ``seed``, returned in split order); all
            that have a valid swap by default.
        facts: ``"id"``: the corrupt query is built from ID facts only; ``"all"``: any.
        seed: seeds both the choice of examples and of the swapped tokens.

    Returns:
        :class:`PromptPairs` with the task's position labels and lens targets, ``swap`` set and
        ``index`` giving each pair's row in ``split``. Examples with no valid swap are skipped.
    """
    spec = task_spec(task)
    if not spec.swaps:
        hint = (
            f"; it is made of {sorted(spec.subtasks(task))}: pass one of them, e.g. "
            "grok_circuits.tasks.subtasks(task)[name]"
            if spec.subtasks is not None
            else ""
        )
        raise ValueError(
            f"task {task.name!r} registers no swaps, so no counterfactual pairs can be built from "
            f"it{hint}; build PromptPairs from tensors instead"
        )
    swaps = swaps_of(task)
    swap = swap if swap is not None else spec.default_swap
    if swap is None or swap not in swaps:
        raise ValueError(f"swap={swap!r} is not a {task.name} swap; choose one of {tuple(swaps)}")
    if facts not in ("id", "all"):
        raise ValueError(f"facts={facts!r}; choose 'id' (ID facts only) or 'all'")
    if n_examples is not None and n_examples < 1:
        raise ValueError(f"n_examples must be >= 1 or None, got {n_examples}")
    s = _split_of(task, split)
    allowed = query_positions(task)
    infer_pos = int(s.answer_pos[0]) if len(s) else -1
    if (
        infer_pos not in allowed
        or s.tokens.shape[1] <= infer_pos
        or bool((s.answer_pos != infer_pos).any())
    ):
        where = " or ".join(map(str, allowed))
        raise ValueError(
            f"the split must hold {task.name} queries with their answer at position {where}, "
            "all at one (e.g. 'train_inferred', 'test_id' or 'test_ood'); got other prompts"
        )
    fn = swaps[swap]
    g = torch.Generator().manual_seed(seed)
    order = torch.randperm(len(s), generator=g)
    want = len(s) if n_examples is None else n_examples
    kept: list[Tensor] = []
    corrupts: list[Tensor] = []
    corrupt_answers: list[Tensor] = []
    n_kept, chunk = 0, min(max(256, 2 * want), 8192)  # bounds the [chunk, candidates] tables
    for i in range(0, len(s), chunk):
        idx = order[i : i + chunk]
        c, a, ok = fn(task, s.select(idx), g, facts=facts)
        kept.append(idx[ok])
        corrupts.append(c[ok])
        corrupt_answers.append(a[ok])
        n_kept += int(ok.sum())
        if n_kept >= want:
            break
    idx, corrupt, answers = torch.cat(kept), torch.cat(corrupts), torch.cat(corrupt_answers)
    if len(idx) == 0:
        raise ValueError(
            f"no example of this split has a valid {swap!r} swap under facts={facts!r}; try "
            "another swap, facts='all', or more data"
        )
    keep = torch.argsort(idx[:want])  # back to split order
    idx, corrupt, answers = idx[:want][keep], corrupt[:want][keep], answers[:want][keep]
    clean = s.select(idx)
    labels = position_labels(task, clean.tokens.shape[1])
    return PromptPairs(
        clean=clean.tokens,
        corrupt=corrupt,
        answers=clean.answers,
        corrupt_answers=answers,
        answer_pos=clean.answer_pos,
        pos_labels=labels,
        lens=lens_targets(task, clean),
        meta=dict(clean.meta),
        swap=swap,
        index=idx,
    )


__all__ = ["Counterfactuals", "PromptPairs", "make_pairs", "position_labels"]
