"""What every analysis takes: a model and :class:`~grok_circuits.PromptPairs`, checked to fit.

The analyses are data-first: they read token tensors, never a task's name. A registered task is
a convenience: :func:`as_pairs` builds its pairs with one of its swaps (the same pairs the paper's
calls use), and :func:`swap_pairs` builds one set per swap. Either way :func:`check_fits` makes
sure the tokens fit the model, so that a model given another task's data stops with one clear
line instead of a wrong number or an ``IndexError`` from deep inside TransformerLens.
"""

import hashlib
from collections.abc import Sequence

import torch
from torch import Tensor

from grok_circuits import backend
from grok_circuits.backend import Model, ModelConfig
from grok_circuits.tasks import PromptPairs, Split, TaskData, make_pairs, subtasks, task_spec
from grok_circuits.tasks.registry import Facts, swaps_of

#: What an analysis accepts as its data.
Data = PromptPairs | TaskData
#: A model, or only its config (enough to check that data fits it).
ModelLike = Model | ModelConfig


def _cfg(model: ModelLike) -> ModelConfig:
    return model if isinstance(model, ModelConfig) else model.cfg


def _check_ids(
    model: ModelLike, width: int, prompts: list[Tensor], answers: list[Tensor], what: str
) -> None:
    """Raise a ``ValueError`` unless prompts of ``width`` positions fit the model's context and
    every token id of ``prompts`` and ``answers`` its vocabulary; ``what`` names the data."""
    cfg = _cfg(model)
    if width > cfg.n_ctx:
        raise ValueError(
            f"the prompts have {width} positions but the model's context holds {cfg.n_ctx} "
            f"(n_ctx); {what} built for another model"
        )
    largest = max((int(t.max()) for t in prompts if t.numel()), default=-1)
    if largest >= cfg.d_vocab:
        raise ValueError(
            f"the prompts use token id {largest} but the model's vocabulary has {cfg.d_vocab} "
            f"tokens (d_vocab); {what} built for another model or task"
        )
    top = max((int(a.max()) for a in answers if a.numel()), default=-1)
    if top >= cfg.d_vocab_out:
        raise ValueError(
            f"an answer has token id {top} but the model has {cfg.d_vocab_out} output tokens "
            f"(d_vocab_out); {what} built for another model or task"
        )


def check_fits(model: ModelLike, pairs: PromptPairs) -> PromptPairs:
    """Raise a ``ValueError`` unless every token id fits the model's vocabulary and every prompt
    fits its context; return ``pairs``."""
    prompts = [pairs.clean, pairs.corrupt] + [t for t, _ in pairs.lens.values()]
    answers = [pairs.answers] + (
        [pairs.corrupt_answers] if pairs.corrupt_answers is not None else []
    )
    _check_ids(model, pairs.width, prompts, answers, "these pairs were")
    return pairs


def check_split_fits(model: ModelLike, split: Split) -> Split:
    """Raise a ``ValueError`` unless the split's prompts fit the model's context and its token
    ids and answers the model's vocabulary (another task's split would otherwise stop with an
    ``IndexError`` inside TransformerLens); return ``split``."""
    _check_ids(model, split.tokens.shape[1], [split.tokens], [split.answers], "this split was")
    return split


def check_task_fits(model: ModelLike, task: TaskData) -> TaskData:
    """Raise a ``ValueError`` unless the task's vocabulary is the model's; return ``task``."""
    if len(task.vocab) != _cfg(model).d_vocab:
        raise ValueError(
            f"the {task.name} task has a vocabulary of {len(task.vocab)} tokens but the model "
            f"has {_cfg(model).d_vocab} (d_vocab): it was trained on another task; pass the task "
            "the model was trained on (run.task)"
        )
    return task


def weights_digest(model: Model) -> str:
    """A SHA-256 digest of the model's parameters, in order: what an analysis that scores a
    model records, so that its scores can be refused on another model (another checkpoint or
    another run, even of the same shape)."""
    h = hashlib.sha256()
    for p in backend.parameters(model):
        flat = p.detach().to("cpu").contiguous().view(-1)
        h.update(f"{tuple(p.shape)} {flat.dtype};".encode())
        # an ndarray is a buffer; numpy's stubs say so from Python 3.12 only
        h.update(flat.view(torch.uint8).numpy())  # type: ignore[arg-type]
    return h.hexdigest()


def resolve_subtask(task: TaskData, subtask: str | None) -> TaskData:
    """``task`` itself, or the view of one of the sub-tasks its registration gives (a mixed
    task's, or one operation of a mixed modular task)."""
    spec = task_spec(task)
    if subtask is not None:
        views = subtasks(task)
        if subtask in views:
            return views[subtask]
        if spec.subtasks is None:
            raise ValueError(
                f"subtask={subtask!r} needs a mixed task (one made of several), but this task is "
                f"{task.name!r}; pass subtask=None (or the task's own name)"
            )
        raise ValueError(f"unknown sub-task {subtask!r}; the {task.name} task has {sorted(views)}")
    if spec.subtasks is not None and not spec.swaps:
        raise ValueError(
            f"the {task.name} task is made of {sorted(spec.subtasks(task))}: pass subtask=NAME to "
            "say which one to analyse"
        )
    return task


def as_pairs(
    model: ModelLike,
    data: Data,
    *,
    swap: str | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int | None = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> PromptPairs:
    """The pairs an analysis runs on: ``data`` itself when it is :class:`PromptPairs` (checked
    against the model with :func:`check_fits`), else the task's pairs under ``swap`` (default:
    the task's own default swap) drawn from ``split``. A task is checked once
    (:func:`check_task_fits`); pairs built from it fit the model as the task does."""
    if isinstance(data, PromptPairs):
        if swap is not None or subtask is not None:
            raise ValueError(
                "swap= and subtask= choose how pairs are built from a task; these are pairs "
                "already (build others with make_pairs)"
            )
        return check_fits(model, data)
    if not isinstance(data, TaskData):
        raise ValueError(
            f"expected PromptPairs or a task (TaskData), got {type(data).__name__}; build pairs "
            "from tensors with PromptPairs(clean=..., corrupt=..., answers=...)"
        )
    task = resolve_subtask(check_task_fits(model, data), subtask)
    return make_pairs(task, swap, split, n_examples=n_examples, facts=facts, seed=seed)


def swap_pairs(
    model: ModelLike,
    data: Data | Sequence[PromptPairs],
    *,
    swaps: Sequence[str] | None = None,
    subtask: str | None = None,
    split: str | Split = "train_inferred",
    n_examples: int | None = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> list[PromptPairs]:
    """A list of pairs: one per swap of a task (default: every swap it registers), built as
    :func:`as_pairs` builds them, the pairs given, or each of a list of pairs."""
    if isinstance(data, TaskData):
        task = resolve_subtask(check_task_fits(model, data), subtask)
        names = tuple(swaps_of(task)) if swaps is None else tuple(swaps)
        if not names:
            raise ValueError("swaps is empty; name at least one of the task's swaps")
        return [
            make_pairs(task, s, split, n_examples=n_examples, facts=facts, seed=seed) for s in names
        ]
    if swaps is not None:
        raise ValueError("swaps= chooses how pairs are built from a task; these are pairs already")
    items = [data] if isinstance(data, PromptPairs) else list(data)
    if not items:
        raise ValueError("no pairs given")
    return [as_pairs(model, p) for p in items]


__all__ = [
    "Data",
    "as_pairs",
    "check_fits",
    "check_split_fits",
    "check_task_fits",
    "resolve_subtask",
    "swap_pairs",
    "weights_digest",
]
