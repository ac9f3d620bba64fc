"""Interchange interventions and distributed alignment search (DAS): where does a model keep a
causal variable?

An *interchange intervention* (Geiger et al. 2021, "Causal Abstractions of Neural Networks")
runs the model on a *base* prompt while the base's activation at one hook point and position,
inside a subspace spanned by an orthonormal basis ``B`` (``[d_model, k]``), is set to its value
on a *source* prompt::

    h' = h_base + ((h_source - h_base) @ B) @ B.T

Outside the subspace the base keeps its own coordinates. If the subspace holds a variable of a
high-level causal model, and nothing else the answer depends on, the model now answers as the
causal model does for the base with that variable taken from the source. The
*interchange-intervention accuracy* (IIA) is the share of pairs where it does: the argmax of the
answer logits is that expected answer. With ``B`` the identity (``k = d_model``) the intervention
is activation patching of the whole vector.

*Distributed alignment search* (Geiger et al. 2023, "Finding Alignments Between Interpretable
Causal Variables and Distributed Neural Representations") learns ``B`` instead: an orthogonal
parametrisation (``torch.nn.utils.parametrizations.orthogonal``) trained by Adam on the
cross-entropy of the expected answer under the intervention, on training pairs; the IIA is then
read on held-out pairs.

A task contributes the causal variables it stores (``register_task(..., variables=...)``). For the
composition task the variable is the **bridge entity** at the ``r1`` position (Wang et al. 2024):
:func:`grok_circuits.tasks.composition.bridge_pairs` pairs a base query ``(h, r1, r2)`` with a
source query whose bridge ``b'`` differs, and the expected answer is the tail of the fact
``(b', r2)``, the source's bridge followed by the base's second relation, looked up in the
task's facts. The pairs carry it as ``corrupt_answers``: for these pairs, and for any
:class:`~grok_circuits.PromptPairs` given to :func:`das`, ``corrupt_answers`` is *the answer the
variable predicts under the interchange*. (The composition task's ``h`` and ``r1`` swaps keep
``r2``, so their corrupt answers are that too; its ``r2`` swap keeps the bridge and is no test of
it.)

An IIA is not evidence on its own: DAS fits arbitrary labels and finds effects in randomly
initialised models (Arora et al. 2024, "CausalGym"). :func:`das` reports controls beside it:
random orthonormal subspaces of the same ``k`` (the IIA a subspace gets by chance), DAS trained
the same way on a randomly initialised model of the same shape, and, on request, DAS trained
towards arbitrary labels (the expected answers relabelled by a fixed permutation).

The conventions (the intervention formula, the initialisation of the learned basis, the Adam
steps and batch order) are those of TransformerLens 4.3's
``transformer_lens.tools.analysis.interchange`` (``SubspaceInterchange``, ``fit_das``), so on
4.x the two give the same numbers on the same subspace; this module runs on 3.x as well.
Hooks are only added inside ``model.hooks(...)``.
"""

from collections.abc import Sequence
from dataclasses import dataclass, replace
from typing import Any, Literal, cast

import numpy as np
import pandas as pd
import torch
import torch.nn.functional as F
from jaxtyping import Float
from torch import Tensor, nn
from torch.nn.utils.parametrizations import orthogonal

from grok_circuits import backend
from grok_circuits.analysis._inputs import as_pairs, check_fits, check_task_fits, resolve_subtask
from grok_circuits.analysis.results import number
from grok_circuits.backend import Model
from grok_circuits.tasks import PromptPairs, TaskData
from grok_circuits.tasks.registry import Facts, task_spec

Activation = Literal["resid_pre", "resid_mid", "resid_post"]
#: The activations an interchange may intervene on (``blocks.{layer}.hook_{activation}``).
ACTIVATIONS: tuple[str, ...] = ("resid_pre", "resid_mid", "resid_post")


# ----------------------------------------------------------------------------- bases
def random_basis(d_model: int, k: int, seed: int) -> Float[Tensor, "d_model k"]:
    """A seeded random orthonormal basis (QR of a Gaussian matrix): the chance control."""
    if not 0 < k <= d_model:
        raise ValueError(f"k must lie in 1..{d_model} (d_model), got {k}")
    g = torch.Generator().manual_seed(seed)
    q, r = torch.linalg.qr(torch.randn(d_model, k, generator=g))
    return q * torch.sign(torch.diagonal(r))  # a unique sign per column


def _check_basis(basis: Tensor, d_model: int) -> Tensor:
    if basis.dim() != 2 or basis.shape[0] != d_model or not 0 < basis.shape[1] <= d_model:
        raise ValueError(
            f"basis must be [d_model, k] = [{d_model}, k] with 1 <= k <= {d_model}, got shape "
            f"{tuple(basis.shape)}"
        )
    gram = basis.T.float() @ basis.float()
    if not torch.allclose(gram, torch.eye(basis.shape[1]), atol=1e-4):
        raise ValueError(
            "basis columns must be orthonormal (basis.T @ basis = I); orthonormalise it with "
            "torch.linalg.qr(basis).Q"
        )
    return basis


# ----------------------------------------------------------------------------- the intervention
def hook_name(layer: int, activation: str = "resid_pre") -> str:
    """The TransformerLens hook of ``activation`` at ``layer``."""
    if activation not in ACTIVATIONS:
        raise ValueError(f"activation={activation!r}; choose one of {ACTIVATIONS}")
    return f"blocks.{layer}.hook_{activation}"


def _position(pairs: PromptPairs, position: int | str) -> int:
    if isinstance(position, str):
        if position not in pairs.pos_labels:
            raise ValueError(
                f"position={position!r} is not one of the prompts' positions {pairs.pos_labels}"
            )
        return pairs.pos_labels.index(position)
    if not -pairs.width <= position < pairs.width:
        raise ValueError(f"position={position} is outside the prompts' {pairs.width} positions")
    return position % pairs.width


@torch.no_grad()
def _activations(model: Model, tokens: Tensor, name: str, pos: int) -> Float[Tensor, "b d"]:
    """The activation at hook ``name``, position ``pos``, of each prompt (one forward pass)."""
    store: list[Tensor] = []

    def grab(act: Tensor, hook: Any) -> None:
        store.append(act[:, pos].detach().clone())

    with model.hooks(fwd_hooks=[(name, grab)]):
        model(tokens)
    return store[0]


def _intervened(
    model: Model,
    tokens: Tensor,
    answer_pos: Tensor,
    name: str,
    pos: int,
    source: Tensor,
    basis: Tensor,
) -> Float[Tensor, "b d_vocab"]:
    """The answer logits of ``tokens`` with the base's activation at (``name``, ``pos``) moved
    to ``source`` inside ``basis``; differentiable in ``basis``."""

    def hook(act: Tensor, hook: Any) -> Tensor:
        base = act[:, pos]
        b = basis.to(act.device, act.dtype)
        new = base + ((source.to(act.device, act.dtype) - base) @ b) @ b.T
        out = act.clone()
        out[:, pos] = new
        return out

    with model.hooks(fwd_hooks=[(name, hook)]):
        logits = model(tokens)
    return logits[torch.arange(len(tokens), device=logits.device), answer_pos.to(logits.device)]


@torch.no_grad()
def interchange_logits(
    model: Model,
    pairs: PromptPairs,
    basis: Float[Tensor, "d_model k"],
    *,
    layer: int,
    position: int | str = "r1",
    activation: Activation = "resid_pre",
    batch_size: int = 1024,
) -> Float[Tensor, "batch d_vocab"]:
    """The answer logits of each base prompt (``pairs.clean``) with its activation at
    (``layer``, ``position``) inside ``basis`` taken from its source prompt (``pairs.corrupt``).

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge`` in eval mode.
        pairs: base prompts as ``clean``, source prompts as ``corrupt``.
        basis: orthonormal ``[d_model, k]``; ``torch.eye(d_model)`` patches the whole vector.
        layer, activation: the hook, ``blocks.{layer}.hook_{activation}``.
        position: a position label of the pairs (``"r1"``) or an index.

    Returns:
        ``[batch, d_vocab_out]`` logits at each pair's answer position, on the CPU.
    """
    check_fits(model, pairs)
    name, pos = hook_name(layer, activation), _position(pairs, position)
    basis = _check_basis(basis, model.cfg.d_model)
    out = []
    for i in range(0, len(pairs), batch_size):
        p = pairs[i : i + batch_size]
        source = _activations(model, p.corrupt, name, pos)
        out.append(_intervened(model, p.clean, p.answer_pos, name, pos, source, basis).cpu())
    return torch.cat(out) if out else torch.zeros(0, model.cfg.d_vocab_out)


def _expected(pairs: PromptPairs) -> Tensor:
    if pairs.corrupt_answers is None:
        raise ValueError(
            "the pairs have no corrupt_answers: an interchange needs, per pair, the answer the "
            "causal variable predicts (build them with a task's registered variable, such as the "
            "composition task's bridge_pairs, or with a task's swap)"
        )
    return pairs.corrupt_answers


def interchange_accuracy(
    model: Model,
    pairs: PromptPairs,
    basis: Float[Tensor, "d_model k"],
    *,
    layer: int,
    position: int | str = "r1",
    activation: Activation = "resid_pre",
) -> float:
    """IIA: the share of pairs whose top answer under the interchange
    (:func:`interchange_logits`) is the answer the variable predicts (``pairs.corrupt_answers``)."""
    logits = interchange_logits(
        model, pairs, basis, layer=layer, position=position, activation=activation
    )
    return float((logits.argmax(-1) == _expected(pairs)).float().mean()) if len(pairs) else 0.0


# ----------------------------------------------------------------------------- DAS
def fit_subspace(
    model: Model,
    pairs: PromptPairs,
    *,
    layer: int,
    k: int = 1,
    position: int | str = "r1",
    activation: Activation = "resid_pre",
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-2,
    seed: int = 0,
) -> tuple[Float[Tensor, "d_model k"], tuple[float, ...]]:
    """Learn a ``k``-dim subspace whose interchange makes the model give ``pairs.corrupt_answers``
    (DAS): an orthogonally parametrised basis trained by Adam on the cross-entropy of the
    expected answer, ``epochs`` passes over the pairs in batches drawn by ``seed``.

    The basis starts as ``orthogonal(nn.Linear(k, d_model))`` built under ``seed``, and the
    steps are TransformerLens 4.3's ``fit_das`` (same batch order, same loss), so both learn the
    same basis. Model parameters are frozen during the call and restored after.

    Returns:
        The learned orthonormal basis ``[d_model, k]`` and the mean training loss per epoch.
    """
    check_fits(model, pairs)
    name, pos = hook_name(layer, activation), _position(pairs, position)
    d_model = model.cfg.d_model
    if not 0 < k <= d_model:
        raise ValueError(f"k must lie in 1..{d_model} (d_model), got {k}")
    if len(pairs) == 0:
        raise ValueError("fit_subspace needs at least one training pair")
    labels = _expected(pairs)
    source = _activations(model, pairs.corrupt, name, pos)
    with torch.random.fork_rng(devices=[]):
        torch.default_generator.manual_seed(seed)
        proj = orthogonal(nn.Linear(k, d_model, bias=False))
    device = source.device
    proj = proj.to(device)
    optimizer = torch.optim.Adam(proj.parameters(), lr=lr)
    rng = np.random.default_rng(seed)
    flags = [p.requires_grad for p in backend.parameters(model)]
    for p in backend.parameters(model):
        p.requires_grad_(False)
    losses = []
    try:
        for _ in range(epochs):
            order = torch.as_tensor(rng.permutation(len(labels)))
            total = 0.0
            for start in range(0, len(order), batch_size):
                idx = order[start : start + batch_size]
                optimizer.zero_grad()
                logits = _intervened(
                    model,
                    pairs.clean[idx],
                    pairs.answer_pos[idx],
                    name,
                    pos,
                    source[idx],
                    cast(Tensor, proj.weight),  # the orthogonal parametrization's basis
                )
                loss = F.cross_entropy(logits, labels[idx].to(logits.device), reduction="sum")
                (loss / len(idx)).backward()
                optimizer.step()
                total += float(loss.detach())
            losses.append(total / len(order))
    finally:
        for p, flag in zip(backend.parameters(model), flags, strict=True):
            p.requires_grad_(flag)
    return cast(Tensor, proj.weight).detach().cpu().clone(), tuple(losses)


@dataclass(frozen=True, eq=False)
class DASResult:
    """The result of :func:`das`: interchange-intervention accuracy per layer of a learned
    subspace and its controls.

    Attributes:
        layers: the layers searched.
        position: the position label intervened on.
        activation: ``"resid_pre"``, ``"resid_mid"`` or ``"resid_post"``.
        k: the subspace's dimension.
        iia_train, iia_test: ``[layer]`` IIA of the learned subspace on the training and the
            held-out pairs.
        iia_random: ``[layer]`` mean held-out IIA of ``n_random`` random subspaces of ``k``
            dimensions.
        iia_full: ``[layer]`` held-out IIA of the whole vector (activation patching; the
            ceiling of any subspace).
        iia_random_init: ``[layer]`` held-out IIA of DAS trained the same way on a randomly
            initialised model of the same shape; NaN when not run.
        iia_arbitrary: ``[layer]`` held-out IIA of DAS trained the same way on the same model
            towards arbitrary labels (the expected answers relabelled by a fixed random
            permutation of the output tokens); NaN when not run.
        bases: ``[layer, d_model, k]`` the learned bases.
        losses: ``[layer, epoch]`` DAS training losses.
        n_train, n_test: pairs used to train and to evaluate.
        base_accuracy: the share of held-out base prompts the model answers correctly without
            any intervention.
    """

    layers: tuple[int, ...]
    position: str
    activation: str
    k: int
    iia_train: Float[Tensor, " layer"]
    iia_test: Float[Tensor, " layer"]
    iia_random: Float[Tensor, " layer"]
    iia_full: Float[Tensor, " layer"]
    iia_random_init: Float[Tensor, " layer"]
    iia_arbitrary: Float[Tensor, " layer"]
    bases: Float[Tensor, "layer d_model k"]
    losses: Float[Tensor, "layer epoch"]
    n_train: int
    n_test: int
    base_accuracy: float

    def summary(self) -> dict[str, Any]:
        """The best layer's held-out IIA and its controls, and the IIA at every layer."""
        best = int(self.iia_test.argmax())
        out: dict[str, Any] = {
            "best_layer": self.layers[best],
            "iia": number(self.iia_test[best]),
            "iia_random": number(self.iia_random[best]),
            "iia_full": number(self.iia_full[best]),
            "iia_random_init": number(self.iia_random_init[best]),
            "iia_arbitrary": number(self.iia_arbitrary[best]),
            "base_accuracy": self.base_accuracy,
            "k": self.k,
            "n_test": self.n_test,
        }
        for i, layer in enumerate(self.layers):
            out[f"iia_L{layer}"] = number(self.iia_test[i])
            out[f"iia_random_L{layer}"] = number(self.iia_random[i])
        return out

    def to_frame(self) -> pd.DataFrame:
        """One row per layer: the IIAs and the final training loss."""
        return pd.DataFrame(
            {
                "layer": list(self.layers),
                "position": self.position,
                "k": self.k,
                "iia_train": self.iia_train.tolist(),
                "iia_test": self.iia_test.tolist(),
                "iia_random": self.iia_random.tolist(),
                "iia_full": self.iia_full.tolist(),
                "iia_random_init": self.iia_random_init.tolist(),
                "iia_arbitrary": self.iia_arbitrary.tolist(),
                "final_loss": self.losses[:, -1].tolist() if self.losses.shape[1] else None,
            }
        )

    def plot(self, ax=None, *, title: str | None = None, **options: Any):
        """Held-out IIA per layer, with the whole-vector ceiling and the two controls."""
        import matplotlib.pyplot as plt

        if ax is None:
            _, ax = plt.subplots(figsize=options.pop("figsize", (5, 3.5)))
        x = list(self.layers)
        ax.plot(x, self.iia_test, "o-", label=f"DAS, k={self.k}")
        ax.plot(x, self.iia_full, "k--", label="whole vector")
        ax.plot(x, self.iia_random, "s:", label="random subspace")
        if not torch.isnan(self.iia_random_init).all():
            ax.plot(x, self.iia_random_init, "^:", label="DAS on a random-init model")
        if not torch.isnan(self.iia_arbitrary).all():
            ax.plot(x, self.iia_arbitrary, "v:", label="DAS to arbitrary labels")
        ax.set(
            xlabel=f"layer ({self.activation} at {self.position})",
            ylabel="interchange accuracy",
            ylim=(-0.02, 1.02),
            xticks=x,
            title=title or f"DAS at {self.position}",
        )
        ax.legend(fontsize="small")
        return ax.figure


def _layers(model: Model, layers: int | Sequence[int] | None) -> tuple[int, ...]:
    n = model.cfg.n_layers
    if layers is None:
        out = tuple(range(n))
    else:
        out = (layers,) if isinstance(layers, int) else tuple(layers)
    bad = [layer for layer in out if not 0 <= layer < n]
    if not out or bad:
        raise ValueError(f"layers must lie in 0..{n - 1} (the model has {n}), got {list(out)}")
    return out


def das(
    model: Model,
    data: "PromptPairs | Sequence[PromptPairs] | TaskData",
    *,
    layers: int | Sequence[int] | None = None,
    position: int | str = "r1",
    activation: Activation = "resid_pre",
    k: int = 1,
    train_fraction: float = 0.5,
    epochs: int = 20,
    batch_size: int = 128,
    lr: float = 1e-2,
    n_random: int = 10,
    random_init: bool = True,
    arbitrary: bool = False,
    swap: str | None = None,
    subtask: str | None = None,
    split: str = "train_inferred",
    n_examples: int = 300,
    facts: Facts = "id",
    seed: int = 0,
) -> DASResult:
    """Distributed alignment search at (``layer``, ``position``) for each layer, with controls.

    The pairs are shuffled by ``seed`` and split: ``train_fraction`` of them train the subspace
    (:func:`fit_subspace`), the rest measure its IIA (:func:`interchange_accuracy`), that of
    ``n_random`` random subspaces of the same ``k`` (:func:`random_basis`, seeds ``seed ..``),
    that of the whole vector, with ``random_init`` that of a subspace trained the same way on a
    model of the same config freshly initialised from ``seed + 1``, and with ``arbitrary`` that
    of a subspace trained towards arbitrary labels.

    Args:
        model: a ``HookedTransformer`` or ``TransformerBridge`` in eval mode.
        data: :class:`~grok_circuits.PromptPairs` (base prompts as ``clean``, sources as
            ``corrupt``, the answer the variable predicts as ``corrupt_answers``), a list of
            them, or a task. For a task with ``swap=None`` the pairs are those of the first
            causal variable it registers (the composition task's bridge entity,
            :func:`grok_circuits.tasks.composition.bridge_pairs`); with a ``swap``, or for a
            task that registers none, the task's swap pairs (:func:`~grok_circuits.make_pairs`).
        layers: a layer, several, or all (default).
        position: where to intervene: a position label (``"r1"``) or an index.
        activation: ``"resid_pre"`` (default), ``"resid_mid"`` or ``"resid_post"``.
        k: the subspace's dimension.
        train_fraction: the share of pairs that trains the subspace.
        epochs, batch_size, lr: DAS training (Adam).
        n_random: random subspaces averaged for the chance control.
        random_init: also train DAS on a randomly initialised model (doubles the cost).
        arbitrary: also train DAS towards arbitrary labels: each expected answer replaced by
            its image under a random permutation of the output tokens drawn by ``seed`` (the
            arbitrary-label control of Arora et al. 2024; one more DAS per layer).
        swap, subtask, split, n_examples, facts, seed: how pairs are built from a task (as
            everywhere, :func:`~grok_circuits.analysis._inputs.as_pairs`); ``seed`` also seeds
            the train/test split, the training and the controls.
    """
    if not 0 < train_fraction < 1:
        raise ValueError(f"train_fraction must lie strictly between 0 and 1, got {train_fraction}")
    if isinstance(data, TaskData) and swap is None:
        task = resolve_subtask(check_task_fits(model, data), subtask)
        variables = task_spec(task).variables
        if variables:  # the task's first registered causal variable
            make = next(iter(variables.values()))
            pairs = make(task, split, n_examples=n_examples, facts=facts, seed=seed)
        else:
            pairs = as_pairs(
                model, task, split=split, n_examples=n_examples, facts=facts, seed=seed
            )
    elif isinstance(data, PromptPairs | TaskData):
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
    else:
        pairs = as_pairs(model, PromptPairs.concat(list(data)))
    _expected(pairs)
    label = pairs.pos_labels[_position(pairs, position)]
    layer_list = _layers(model, layers)
    order = torch.randperm(len(pairs), generator=torch.Generator().manual_seed(seed))
    n_train = int(round(train_fraction * len(pairs)))
    if n_train < 1 or n_train >= len(pairs):
        raise ValueError(
            f"{len(pairs)} pairs split at train_fraction={train_fraction} leave no training or "
            "no held-out pair; give more pairs"
        )
    train, test = pairs[order[:n_train]], pairs[order[n_train:]]
    d_model = model.cfg.d_model
    with torch.no_grad():
        logits = model(test.clean)
        top = logits[torch.arange(len(test)), test.answer_pos].argmax(-1)
        base_accuracy = float((top == test.answers).float().mean())
    control = None
    if random_init:
        control = backend.build_model(model.cfg, seed=seed + 1, device=test.clean.device)
        control.eval()
    relabelled = None
    if arbitrary:
        perm = torch.randperm(
            model.cfg.d_vocab_out, generator=torch.Generator().manual_seed(seed)
        ).to(pairs.clean.device)
        relabel = lambda p: replace(p, corrupt_answers=perm[p.corrupt_answers])  # noqa: E731
        relabelled = relabel(train), relabel(test)
    kw: dict[str, Any] = dict(position=label, activation=activation)
    fit: dict[str, Any] = dict(k=k, epochs=epochs, batch_size=batch_size, lr=lr, seed=seed, **kw)

    def trained_iia(m: Model, train: PromptPairs, test: PromptPairs, layer: int) -> float:
        basis, _ = fit_subspace(m, train, layer=layer, **fit)
        return interchange_accuracy(m, test, basis, layer=layer, **kw)

    nan = float("nan")
    rows = []
    for layer in layer_list:
        basis, losses = fit_subspace(model, train, layer=layer, **fit)
        randoms = [
            interchange_accuracy(model, test, random_basis(d_model, k, seed + i), layer=layer, **kw)
            for i in range(n_random)
        ]
        rows.append(
            (
                interchange_accuracy(model, train, basis, layer=layer, **kw),
                interchange_accuracy(model, test, basis, layer=layer, **kw),
                float(np.mean(randoms)) if randoms else nan,
                interchange_accuracy(model, test, torch.eye(d_model), layer=layer, **kw),
                nan if control is None else trained_iia(control, train, test, layer),
                nan if relabelled is None else trained_iia(model, *relabelled, layer),
                basis,
                losses,
            )
        )
    col = lambda j: torch.tensor([r[j] for r in rows])  # noqa: E731
    return DASResult(
        layers=layer_list,
        position=label,
        activation=activation,
        k=k,
        iia_train=col(0),
        iia_test=col(1),
        iia_random=col(2),
        iia_full=col(3),
        iia_random_init=col(4),
        iia_arbitrary=col(5),
        bases=torch.stack([r[6] for r in rows]),
        losses=torch.tensor([r[7] for r in rows]),
        n_train=len(train),
        n_test=len(test),
        base_accuracy=base_accuracy,
    )


__all__ = [
    "ACTIVATIONS",
    "DASResult",
    "das",
    "fit_subspace",
    "hook_name",
    "interchange_accuracy",
    "interchange_logits",
    "random_basis",
]
