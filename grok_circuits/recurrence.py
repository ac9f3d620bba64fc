"""Recurrent-depth models: a prelude, a recurrent core run a chosen number of times, and a coda,
as one TransformerLens model in which every block *and every iteration* has its own hook names.

Kohli, Parthasarathy, Sun and Yao, "Loop, Think, & Generalize: Implicit Reasoning in
Recurrent-Depth Transformers" (arXiv 2604.07822, 2026) train GPT-2 blocks that are iterated:
a recurrent-depth model reaches systematic (OOD) composition through a three-stage grokking
(memorize, then ID, then OOD), and, given more iterations at inference than in training, answers
queries with more hops than it was trained on, until too many iterations hurt ("overthinking").
Their recipe, as their code runs it:

- the whole stack is the recurrent core (4 GPT-2 blocks; no prelude or coda), between the
  embedding and the final LayerNorm and unembedding;
- a fixed count of iterations (4, for systematic generalization), or a count drawn per batch
  from a Poisson distribution of mean 4 clipped to [2, 8] ("dynamic recurrence", for depth
  extrapolation), the model then evaluated at the top of that range;
- optionally *input injection*: the embeddings added to the residual stream again before each
  iteration after the first;
- a hop curriculum (train on hops <= k until the k-hop test accuracy passes 0.95, then add
  k + 1), and, at inference, adaptive halting (stop iterating where the answer's distribution
  stops changing and its entropy is low).

Here :class:`Recurrence` describes the split, ``prelude + core x iterations + coda`` blocks, with
the prelude and coda of Geiping et al. (2025) as options (the paper's setting is
``prelude=0, coda=0``); :class:`~grok_circuits.config.TrainConfig` takes the same fields
(``prelude``, ``core``, ``coda``, ``iterations``, ``iterations_mean``, ``eval_iterations``,
``inject``), and the paper's cross-layer sharing, ``TrainConfig(n_loops=k)``, is the case
``core = n_layers / k, iterations = k``.

How it is built. A model run with ``n`` iterations is a plain model of
``prelude + core * n + coda`` blocks (``cfg.n_layers``). Position ``prelude + core * j + c``
(iteration ``j``, counted from 0, core layer ``c``) is a block module of its own, with its own
hook points (``blocks.{prelude + core*j + c}.hook_resid_pre``, ``.attn.hook_pattern``, ...), that
holds the *same parameter objects* as position ``prelude + c``: a gradient step moves every
copy, the optimizer and checkpoints see each shared parameter once, and the logit lens, causal
tracing and circuit discovery read each iteration as the layers it is. :func:`set_iterations`
changes ``n`` in place (the blocks for a count not seen before are made once and kept);
:func:`iterations` does so for a block of code. The count a model is built with is its
*nominal* count: its stored config's ``n_layers`` and its checkpoints use that layout, and
:func:`grok_circuits.model.model_weights` always reads it.

Input injection (``inject=True``) adds the prelude's output (the embeddings, without a prelude)
to the residual stream at ``blocks.{prelude + core*j}.hook_resid_pre`` for every ``j >= 1``,
through a forward hook kept outside TransformerLens' hook registry (``reset_hooks`` leaves it):
a user's hook at that point sees the injected stream, and an analysis that adds up the
residual stream's components (attention, MLP, embeddings) misses the injected term.

The hop curriculum is ``TrainConfig.hop_curriculum`` (:mod:`grok_circuits.training.curriculum`).

Adaptive halting is an analysis here, not a forward mode:
:func:`grok_circuits.analysis.lens.halting.adaptive_halting` reads the output after every count
and stops each query where its distribution settles (a KL threshold between consecutive counts).

Deviations from the paper: no initial scaling of the blocks' output projections (their
``c_scale``); the count drawn per batch comes from ``(seed, step)`` so that a resumed run draws
the same counts; the curriculum moves on at an evaluation (every ``eval_every`` steps) where
theirs does at the end of an epoch; and, as everywhere in this package, TransformerLens' blocks
with learned positions rather than GPT-2's with none (their NoPE option).
"""

import contextlib
from collections.abc import Iterator
from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import torch

from grok_circuits import backend

if TYPE_CHECKING:
    from grok_circuits.backend import Model
    from grok_circuits.config import TrainConfig


@dataclass(frozen=True)
class Recurrence:
    """A recurrent-depth split of a model: ``prelude`` blocks run once, ``core`` blocks run
    ``iterations`` times, ``coda`` blocks run once, in that order.

    Args:
        prelude: blocks before the core (0 or more).
        core: blocks iterated (1 or more).
        coda: blocks after the core (0 or more).
        iterations: the nominal count: the model is built, evaluated and stored with it
            (``cfg.n_layers == depth()``); :func:`set_iterations` runs any other.
        inject: add the prelude's output (the embeddings, without a prelude) to the residual
            stream before each iteration after the first.
    """

    prelude: int = 0
    core: int = 1
    coda: int = 0
    iterations: int = 1
    inject: bool = False

    def __post_init__(self) -> None:
        for name, low in (("prelude", 0), ("core", 1), ("coda", 0), ("iterations", 1)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"Recurrence.{name} must be an integer >= {low}, got {value!r}")
        if not isinstance(self.inject, bool):
            raise ValueError(f"Recurrence.inject must be True or False, got {self.inject!r}")

    @classmethod
    def from_loops(cls, n_layers: int, n_loops: int) -> "Recurrence":
        """The paper's cross-layer sharing (``TrainConfig.n_loops``): ``n_layers / n_loops``
        blocks run ``n_loops`` times, no prelude or coda."""
        return cls(core=n_layers // n_loops, iterations=n_loops)

    def depth(self, iterations: int | None = None) -> int:
        """The number of blocks the model runs with ``iterations`` (default: the nominal
        count)."""
        n = self.iterations if iterations is None else iterations
        return self.prelude + self.core * n + self.coda

    def layers(self, iteration: int, iterations: int | None = None) -> range:
        """The block positions of ``iteration`` (counted from 0) in a model run with
        ``iterations``: where to read that iteration in a cache."""
        n = self.iterations if iterations is None else iterations
        if not 0 <= iteration < n:
            raise ValueError(f"iteration {iteration} is not one of the model's {n} (0 to {n - 1})")
        start = self.prelude + self.core * iteration
        return range(start, start + self.core)

    @property
    def unique_blocks(self) -> int:
        """How many blocks hold their own parameters: ``prelude + core + coda``."""
        return self.prelude + self.core + self.coda


def recurrence_of_config(cfg: "TrainConfig", n_layers: int) -> Recurrence | None:
    """The :class:`Recurrence` a training config asks for on a model of ``n_layers`` blocks
    (the nominal depth), or None for a plain model. ``n_loops > 1`` is
    :meth:`Recurrence.from_loops`; ``core`` set is the prelude/core/coda split with the
    nominal count :func:`nominal_iterations`. A ValueError if ``n_layers`` is not that depth."""
    if cfg.core is None:
        if cfg.n_loops > 1:
            if n_layers % cfg.n_loops:
                raise ValueError(
                    f"n_loops={cfg.n_loops} must divide n_layers={n_layers}; use one of "
                    f"{[k for k in range(1, n_layers + 1) if n_layers % k == 0]}"
                )
            return Recurrence.from_loops(n_layers, cfg.n_loops)
        return None
    spec = Recurrence(cfg.prelude, cfg.core, cfg.coda, nominal_iterations(cfg), cfg.inject)
    if spec.depth() != n_layers:
        raise ValueError(
            f"the model config has n_layers={n_layers}, but prelude={cfg.prelude} + core="
            f"{cfg.core} x {spec.iterations} iterations + coda={cfg.coda} is {spec.depth()} "
            f"blocks; give a model config with n_layers={spec.depth()} (or none: training "
            "sizes it)"
        )
    return spec


def nominal_iterations(cfg: "TrainConfig") -> int:
    """The count a config's model is built, evaluated and stored with: ``eval_iterations``
    if set, else the fixed ``iterations``, else the top of its range (as the paper evaluates
    its dynamic recurrence); ``n_loops`` for the paper's sharing."""
    if cfg.core is None:
        return cfg.n_loops
    if cfg.eval_iterations is not None:
        return cfg.eval_iterations
    return cfg.iterations if isinstance(cfg.iterations, int) else cfg.iterations[1]


def draw_iterations(cfg: "TrainConfig", step: int) -> int:
    """The count training step ``step`` runs: the fixed ``cfg.iterations``, or one drawn from
    its range ``(lo, hi)``, uniformly or, with ``iterations_mean``, from a Poisson distribution
    of that mean clipped to the range (the paper's dynamic recurrence: (2, 8), mean 4). The draw
    is a function of ``(cfg.seed, step)`` only, so a resumed run draws the same counts."""
    if isinstance(cfg.iterations, int):
        return cfg.iterations
    lo, hi = cfg.iterations
    rng = np.random.default_rng([cfg.seed, step, 0x100F])
    if cfg.iterations_mean is None:
        return int(rng.integers(lo, hi + 1))
    return int(min(max(rng.poisson(cfg.iterations_mean), lo), hi))


# ----------------------------------------------------------------------------- the model
class _State:
    """What a recurrent model carries besides its modules: its split, every block it may run
    (by role), the count it runs now, and the injection hooks in place."""

    def __init__(self, spec: Recurrence, blocks: list) -> None:
        p, c, n = spec.prelude, spec.core, spec.iterations
        self.spec = spec
        self.prelude = blocks[:p]
        self.core = [blocks[p + c * j : p + c * (j + 1)] for j in range(n)]
        self.coda = blocks[p + c * n :]
        self.current = n
        self.injected: torch.Tensor | None = None
        self.handles: list = []

    def blocks(self, n: int) -> list:
        return self.prelude + [b for j in range(n) for b in self.core[j]] + self.coda


def _tie(block: torch.nn.Module, source: torch.nn.Module) -> None:
    """Give ``block`` the parameter objects of ``source`` (a block of the same shape)."""
    modules = dict(source.named_modules())
    for name, module in block.named_modules():
        for key, param in modules[name]._parameters.items():
            module._parameters[key] = param


def _state(model: "Model") -> _State | None:
    return model.__dict__.get("_grok_recurrence")


def make_recurrent(model: "Model", spec: Recurrence) -> "Model":
    """Make ``model`` (of ``spec.depth()`` blocks) the recurrent model ``spec`` describes, in
    place: each later iteration's blocks take the parameter objects of the first iteration's
    (their own initial values are dropped), and the injection hooks are set if
    ``spec.inject``. Returns ``model``."""
    if model.cfg.n_layers != spec.depth():
        raise ValueError(
            f"the model has {model.cfg.n_layers} blocks, but {spec} needs {spec.depth()}"
        )
    if _state(model) is not None:
        raise ValueError("the model is recurrent already; build a fresh one")
    blocks = list(model.blocks)
    p, c = spec.prelude, spec.core
    for j in range(1, spec.iterations):
        for i in range(c):
            _tie(blocks[p + c * j + i], blocks[p + i])
    state = _State(spec, blocks)
    object.__setattr__(model, "_grok_recurrence", state)  # plain attribute: not a submodule
    _set_injection(model, state)
    return model


def recurrence_of(model: "Model") -> Recurrence | None:
    """The :class:`Recurrence` of a model built recurrent (``iterations``: its nominal count),
    or None for a plain model."""
    state = _state(model)
    return None if state is None else state.spec


def iterations_of(model: "Model") -> int:
    """How many times ``model`` runs its core now (1 for a plain model)."""
    state = _state(model)
    return 1 if state is None else state.current


def set_iterations(model: "Model", n: int) -> "Model":
    """Run ``model``'s core ``n`` times from now on, in place: its blocks become
    ``prelude + core x n + coda``, ``cfg.n_layers`` follows, and every hook point is named by
    its position (iteration ``j``'s blocks are ``Recurrence.layers(j, n)``). Blocks for a count
    beyond any seen before are made once (sharing the core's parameters) and kept. Returns
    ``model``.

    Raises a ValueError for a plain model or for ``n < 1``.
    """
    state = _state(model)
    if state is None:
        raise ValueError(
            "this model has no recurrent core; train it with TrainConfig(core=..., "
            "iterations=...) or n_loops > 1"
        )
    if isinstance(n, bool) or not isinstance(n, int) or n < 1:
        raise ValueError(f"iterations must be an integer >= 1, got {n!r}")
    if n == state.current:
        return model
    _grow(model, state, n)
    backend.set_blocks(model, state.blocks(n))
    state.current = n
    _set_injection(model, state)
    return model


@contextlib.contextmanager
def iterations(model: "Model", n: int) -> Iterator["Model"]:
    """``model`` run with ``n`` iterations for the duration, its count restored afterwards
    (also on error)."""
    before = iterations_of(model)
    set_iterations(model, n)
    try:
        yield model
    finally:
        set_iterations(model, before)


def _grow(model: "Model", state: _State, n: int) -> None:
    """Make the blocks of iterations ``len(state.core)`` to ``n - 1``: blocks of a fresh model
    of the same shape (so that each backend makes its own kind), tied to the core."""
    missing = n - len(state.core)
    if missing <= 0:
        return
    c = state.spec.core
    fields = {**backend.config_to_dict(model.cfg), "n_layers": c * missing}
    param = next(model.parameters())
    donor = backend.build_model(backend.config_from_dict(fields), seed=0, device=param.device)
    new = list(donor.blocks)
    for j in range(missing):
        group = new[c * j : c * (j + 1)]
        for block, source in zip(group, state.core[0]):
            _tie(block, source)
            block.to(dtype=param.dtype).train(model.training)
        state.core.append(group)


def _set_injection(model: "Model", state: _State) -> None:
    """Remove the injection hooks, then, for a model with ``inject``, keep the core's first
    input (the prelude's output) and add it at the start of every later iteration."""
    for handle in state.handles:
        handle.remove()
    state.handles = []
    spec = state.spec
    if not spec.inject:
        return
    points = model.hook_dict

    def keep(module, args, output):
        state.injected = output

    def add(module, args, output):
        return output + state.injected

    first = points[f"blocks.{spec.prelude}.hook_resid_pre"]
    state.handles.append(first.register_forward_hook(keep))
    for j in range(1, state.current):
        point = points[f"blocks.{spec.layers(j, state.current)[0]}.hook_resid_pre"]
        state.handles.append(point.register_forward_hook(add))


@contextlib.contextmanager
def nominal(model: "Model") -> Iterator["Model"]:
    """``model`` at its nominal count for the duration (what its weights are stored in)."""
    state = _state(model)
    if state is None:
        yield model
        return
    with iterations(model, state.spec.iterations):
        yield model


def depth_overrides(cfg: "TrainConfig") -> dict[str, int]:
    """``{"n_layers": prelude + core * nominal + coda}`` for a config with a recurrent core
    (what :func:`grok_circuits.model.model_config` is given so that the size preset sets the
    width and the core the depth); empty otherwise."""
    if cfg.core is None:
        return {}
    return {"n_layers": cfg.prelude + cfg.core * nominal_iterations(cfg) + cfg.coda}


def training_iterations(model: "Model", cfg: "TrainConfig", step: int):
    """The context training step ``step`` runs its forward pass in: ``model`` at
    :func:`draw_iterations`' count for a config with a recurrent core, unchanged otherwise."""
    if cfg.core is None:
        return contextlib.nullcontext(model)
    return iterations(model, draw_iterations(cfg, step))
