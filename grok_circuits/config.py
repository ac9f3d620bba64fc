"""Configs that the rest of the package reads: :class:`TrainConfig` and the model size names.

A leaf module (it imports nothing from grok_circuits but the field checks), so that tasks, the
training loop and the run folder can all depend on it without importing each other.
"""

import math
from dataclasses import asdict, dataclass
from typing import Any, Literal

from grok_circuits.checks import check_known_fields

ModelSize = Literal["tiny", "tutorial", "paper"]


def _count(value: Any, low: int) -> bool:
    """An integer (not a bool) >= ``low``."""
    return isinstance(value, int) and not isinstance(value, bool) and value >= low


def _number(value: Any) -> bool:
    """A real number (not a bool)."""
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _steps_then_factor(value: Any, n_steps: int) -> bool:
    """A schedule's shape: a tuple of ``n_steps`` integer steps, the first >= 0 and each after
    the one before, then a real factor (whose range the caller checks)."""
    if not isinstance(value, tuple) or len(value) != n_steps + 1:
        return False
    low = 0
    for step in value[:-1]:
        if not _count(step, low):
            return False
        low = step + 1
    return _number(value[-1])


@dataclass(frozen=True)
class TrainConfig:
    """How to train. Validated on construction; ``to_dict``/``from_dict`` round-trip.

    Args:
        max_steps: optimizer steps to train for.
        batch_size: examples per step; ``None`` trains full-batch.
        lr: peak learning rate (constant after warm-up).
        weight_decay: AdamW decoupled weight decay on weight matrices, embeddings and the
            attention's query, key and value biases (not on LayerNorm or the other biases;
            :func:`grok_circuits.backend.decays`); larger values grok faster (paper section 3).
        betas: AdamW betas.
        warmup_steps: linear warm-up from 0 to ``lr``.
        lr_decay: ``(start, end, factor)``: after step ``start`` the learning rate falls
            linearly to ``factor * lr`` at step ``end`` and stays there (annealing, so that the
            model fits its training facts exactly); ``None``: constant after warm-up.
        weight_decay_after: ``(step, factor)``: after ``step`` the weight decay is
            ``factor * weight_decay`` (e.g. a low decay while the training set is memorized
            and a higher one to speed the cleanup to the generalizing circuit); ``None``:
            constant. Both schedules scale ``lr`` and ``weight_decay``, so changing those
            keeps the schedule's shape.
        grad_clip: max global gradient norm (``None`` disables clipping).
        eval_every: evaluate every this many steps (and at step 0).
        eval_size: at most this many examples per probe (a fixed sample).
        dense_until: checkpoint at every evaluation up to this step...
        checkpoints_per_decade: ...then at this many log-spaced steps per factor of 10. Training
            also checkpoints the memorizing and generalizing steps when it reaches them
            (``run.saturation_step``, ``run.grok_step``), wherever they fall.
        keep_states: keep the optimizer/RNG state of only the latest few checkpoints
            (weights are always kept); resuming needs one.
        stop_id_acc: stop once ID accuracy has been >= this for ``stop_patience`` evaluations.
        stop_ood_acc: with ``stop_id_acc``, also require OOD accuracy to average >= this over
            those ``stop_patience`` evaluations (a mean, since OOD accuracy can swing around
            its target from one evaluation to the next).
        stop_train_acc: with ``stop_id_acc``, also require training accuracy to average >= this
            over those evaluations.
        stop_patience: see ``stop_id_acc``.
        model_size: size preset of the model when no ``HookedTransformerConfig`` is given.
        n_loops: share the blocks' parameters across passes: the model's ``n_layers`` blocks
            are ``n_layers / n_loops`` unique blocks run ``n_loops`` times (the paper's
            appendix E.2 remedy for OOD composition: 4 layers run twice). 1: no sharing. The
            same model as ``core=n_layers // n_loops, iterations=n_loops``.
        prelude: with ``core``, blocks run once before the recurrent core
            (:mod:`grok_circuits.recurrence`).
        core: blocks of the recurrent core (Kohli et al. 2026, recurrent depth), iterated
            ``iterations`` times, each iteration with its own hook names; ``None``: no core
            (a plain model, or ``n_loops``). The model then has
            ``prelude + core * eval_iterations + coda`` blocks; ``model_size`` sets the width.
        coda: with ``core``, blocks run once after it.
        iterations: with ``core``, how many times training runs it: an integer, or a range
            ``(lo, hi)`` from which each batch draws its count (the paper's dynamic recurrence).
        iterations_mean: with a range, draw the count from a Poisson distribution of this mean
            clipped to the range (the paper: ``(2, 8)``, mean 4); ``None`` draws uniformly.
        eval_iterations: the count evaluation, checkpoints and ``run.model()`` use (the model's
            nominal count; ``run.model(step, iterations=n)`` runs any other); ``None``: the
            fixed ``iterations``, or the top of the range.
        inject: with ``core``, add the prelude's output (the embeddings, without a prelude) to
            the residual stream before each iteration after the first (input injection).
        hop_curriculum: train on queries of at most 2 hops, then add a hop each time the
            current hop count's ID test accuracy passes this (the paper: 0.95), up to the
            task's ``train_hops`` (:mod:`grok_circuits.training.curriculum`); ``None``: all
            at once.
        seed: seeds the initial weights and the batch order.
        device: ``"auto"`` (CUDA when present), ``"cpu"``, ``"cuda"``, ...
        threads: torch CPU threads for the training loop; ``None`` chooses from the cores this
            process may use and how busy they are (see
            :func:`grok_circuits.training.cpu.choose_threads`). Results do not depend on it.
        loss: the training loss by name: ``"cross_entropy"`` (softmax), ``"stablemax"``
            (Prieto et al. 2025,
            :func:`grok_circuits.training.plugins.stablemax_cross_entropy`) or one added with
            :func:`grok_circuits.register_loss`.
        loss_float64: compute the loss from float64 logits (as TransformerLens' grokking demo
            does), which delays softmax collapse.
        grad_filter: ``None``, ``"ema"`` or ``"ma"``: the Grokfast gradient filter (Lee et al.
            2024), applied between the backward pass and the optimizer step.
        grad_filter_alpha: the EMA filter's decay ``alpha``.
        grad_filter_window: the MA filter's window, in steps.
        grad_filter_lamb: how much of the filtered gradient is added, ``lambda``.
        orthograd: remove from each gradient its component along its parameter, keeping its
            norm (Prieto et al. 2025, "⊥Grad"), after the gradient filter.
        grad_hooks: names of further gradient hooks (:func:`grok_circuits.register_grad_hook`),
            applied in order after the built-in ones. See :mod:`grok_circuits.training.plugins`
            for the formulas; every plug-in is off by default.
        precision: ``"float32"``, ``"bf16"`` (the training forward pass under bf16 autocast;
            the loss, the optimizer and evaluation stay in float32) or ``"auto"``: bf16 where
            the device has bf16 matrix products in hardware, else float32
            (:mod:`grok_circuits.training.precision`). A run stores the precision it used.
        compile: train through ``torch.compile(model)`` (evaluation runs the plain model).
        fused_layer_norm: the training forward pass computes the model's LayerNorms with torch's
            fused kernel (:func:`grok_circuits.backend.fused_layer_norm`: the same function,
            rounded differently; a LayerNorm with a hook attached is left as it is); evaluation
            and the analyses run TransformerLens' own. Not with ``compile``, which fuses it
            itself.
        log_to: mirror every metrics row to ``"tensorboard"`` and/or ``"wandb"``
            (:mod:`grok_circuits.training.tracking`); the run folder stays the record, and a
            resumed run
            may change it.
    """

    max_steps: int = 10_000
    batch_size: int | None = 512
    lr: float = 1e-3
    weight_decay: float = 1.0
    betas: tuple[float, float] = (0.9, 0.98)
    warmup_steps: int = 100
    lr_decay: tuple[int, int, float] | None = None
    weight_decay_after: tuple[int, float] | None = None
    grad_clip: float | None = 1.0
    eval_every: int = 100
    eval_size: int = 1000
    dense_until: int = 1000
    checkpoints_per_decade: int = 10
    keep_states: int = 2
    stop_id_acc: float | None = None
    stop_ood_acc: float | None = None
    stop_train_acc: float | None = None
    stop_patience: int = 3
    model_size: ModelSize = "tutorial"
    n_loops: int = 1
    prelude: int = 0
    core: int | None = None
    coda: int = 0
    iterations: int | tuple[int, int] = 1
    iterations_mean: float | None = None
    eval_iterations: int | None = None
    inject: bool = False
    hop_curriculum: float | None = None
    seed: int = 0
    device: str = "auto"
    threads: int | None = None
    loss: str = "cross_entropy"
    loss_float64: bool = False
    grad_filter: Literal["ema", "ma"] | None = None
    grad_filter_alpha: float = 0.98
    grad_filter_window: int = 100
    grad_filter_lamb: float = 2.0
    orthograd: bool = False
    grad_hooks: tuple[str, ...] = ()
    precision: Literal["float32", "bf16", "auto"] = "float32"
    compile: bool = False
    fused_layer_norm: bool = False
    log_to: tuple[str, ...] = ()

    def __post_init__(self) -> None:
        def need(ok: bool, name: str, rule: str) -> None:
            if not ok:
                raise ValueError(f"TrainConfig.{name} must be {rule}, got {getattr(self, name)!r}")

        need(self.max_steps >= 0, "max_steps", ">= 0")
        need(self.batch_size is None or self.batch_size >= 1, "batch_size", ">= 1 or None")
        need(self.lr > 0, "lr", "> 0")
        need(self.weight_decay >= 0, "weight_decay", ">= 0")
        need(len(self.betas) == 2 and all(0 <= b < 1 for b in self.betas), "betas", "2 in [0,1)")
        need(self.warmup_steps >= 0, "warmup_steps", ">= 0")
        need(
            self.lr_decay is None
            or (_steps_then_factor(self.lr_decay, 2) and self.lr_decay[2] > 0),
            "lr_decay",
            "None or (start, end, factor) with 0 <= start < end and factor > 0",
        )
        need(
            self.weight_decay_after is None
            or (_steps_then_factor(self.weight_decay_after, 1) and self.weight_decay_after[1] >= 0),
            "weight_decay_after",
            "None or (step, factor) with step >= 0 and factor >= 0",
        )
        need(self.grad_clip is None or self.grad_clip > 0, "grad_clip", "> 0 or None")
        need(self.eval_every >= 1, "eval_every", ">= 1")
        need(self.eval_size >= 1, "eval_size", ">= 1")
        need(self.dense_until >= 0, "dense_until", ">= 0")
        need(self.checkpoints_per_decade >= 1, "checkpoints_per_decade", ">= 1")
        need(self.keep_states >= 1, "keep_states", ">= 1")
        need(self.stop_id_acc is None or 0 < self.stop_id_acc <= 1, "stop_id_acc", "in (0, 1]")
        need(self.stop_ood_acc is None or 0 < self.stop_ood_acc <= 1, "stop_ood_acc", "in (0, 1]")
        need(
            self.stop_train_acc is None or 0 < self.stop_train_acc <= 1,
            "stop_train_acc",
            "in (0, 1]",
        )
        need(self.stop_patience >= 1, "stop_patience", ">= 1")
        need(self.model_size in ("tiny", "tutorial", "paper"), "model_size", "tiny/tutorial/paper")
        need(isinstance(self.n_loops, int) and self.n_loops >= 1, "n_loops", "an integer >= 1")
        self._check_recurrence(need)
        need(
            self.threads is None or (isinstance(self.threads, int) and self.threads >= 1),
            "threads",
            "an integer >= 1 or None (automatic)",
        )
        # Names of losses and hooks are checked against their registries when training starts
        # (grok_circuits.training.plugins), so that reading a run's config needs no torch.
        need(isinstance(self.loss, str) and bool(self.loss), "loss", "a loss name")
        need(self.grad_filter in (None, "ema", "ma"), "grad_filter", "None, 'ema' or 'ma'")
        need(0 <= self.grad_filter_alpha < 1, "grad_filter_alpha", "in [0, 1)")
        need(self.grad_filter_window >= 1, "grad_filter_window", ">= 1")
        need(self.grad_filter_lamb >= 0, "grad_filter_lamb", ">= 0")
        need(
            isinstance(self.grad_hooks, tuple) and all(isinstance(h, str) for h in self.grad_hooks),
            "grad_hooks",
            "a tuple of hook names",
        )
        need(
            self.precision in ("float32", "bf16", "auto"),
            "precision",
            "'float32', 'bf16' or 'auto'",
        )
        need(isinstance(self.compile, bool), "compile", "True or False")
        need(isinstance(self.fused_layer_norm, bool), "fused_layer_norm", "True or False")
        need(
            not (self.fused_layer_norm and self.compile),
            "fused_layer_norm",
            "False with compile=True (torch.compile fuses LayerNorm itself, and would compile "
            "the model again every step)",
        )
        need(
            isinstance(self.log_to, tuple)
            and all(t in ("tensorboard", "wandb") for t in self.log_to),
            "log_to",
            "a tuple of 'tensorboard' and/or 'wandb'",
        )

    def _check_recurrence(self, need) -> None:
        count = _count
        need(self.core is None or count(self.core, 1), "core", "an integer >= 1 or None")
        need(count(self.prelude, 0), "prelude", "an integer >= 0")
        need(count(self.coda, 0), "coda", "an integer >= 0")
        it = self.iterations
        need(
            count(it, 1)
            or (isinstance(it, tuple) and len(it) == 2 and count(it[0], 1) and count(it[1], it[0])),
            "iterations",
            "an integer >= 1 or a range (lo, hi) with 1 <= lo <= hi",
        )
        need(
            self.iterations_mean is None
            or (isinstance(it, tuple) and isinstance(self.iterations_mean, (int, float)))
            and self.iterations_mean > 0,
            "iterations_mean",
            "None, or > 0 with a range of iterations",
        )
        need(
            self.eval_iterations is None or count(self.eval_iterations, 1),
            "eval_iterations",
            "an integer >= 1 or None",
        )
        need(isinstance(self.inject, bool), "inject", "True or False")
        need(
            self.hop_curriculum is None or 0 < self.hop_curriculum <= 1,
            "hop_curriculum",
            "in (0, 1] or None",
        )
        if self.core is None:
            given = [
                name
                for name, default in (("prelude", 0), ("coda", 0), ("iterations", 1))
                if getattr(self, name) != default
            ]
            given += [n for n in ("iterations_mean", "eval_iterations") if getattr(self, n)]
            given += ["inject"] if self.inject else []
            if given:
                raise ValueError(
                    f"TrainConfig.{given[0]} is set but core is None: these fields describe a "
                    "recurrent core; set core= (the number of blocks it iterates)"
                )
        elif self.n_loops != 1:
            raise ValueError(
                f"TrainConfig.n_loops={self.n_loops} and core={self.core} both ask for shared "
                f"blocks; n_loops=k is core=n_layers // k, iterations=k: set one of them"
            )

    def to_dict(self) -> dict:
        d = asdict(self)
        if isinstance(self.iterations, tuple):
            d["iterations"] = list(self.iterations)
        d["betas"] = list(self.betas)
        for key in ("lr_decay", "weight_decay_after"):
            if d[key] is not None:
                d[key] = list(d[key])
        d["grad_hooks"] = list(self.grad_hooks)
        d["log_to"] = list(self.log_to)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "TrainConfig":
        """The inverse of :meth:`to_dict`; fields a stored config lacks (older runs) take their
        defaults."""
        check_known_fields(cls, d)
        d = dict(d)
        if "betas" in d:
            d["betas"] = tuple(d["betas"])
        if isinstance(d.get("iterations"), list):
            d["iterations"] = tuple(d["iterations"])
        for key in ("grad_hooks", "log_to", "lr_decay", "weight_decay_after"):
            if d.get(key) is not None:
                d[key] = tuple(d[key])
        return cls(**d)

    def is_checkpoint_step(self, step: int) -> bool:
        """Dense (every evaluation) up to ``dense_until``, then log-spaced, plus ``max_steps``."""
        if step == self.max_steps or step == 0:
            return True
        if step % self.eval_every:
            return False
        if step <= self.dense_until:
            return True
        # The first evaluated step at or after each log-spaced target 10**(k/per) is one.
        k = math.floor(self.checkpoints_per_decade * math.log10(step) + 1e-9)
        return 10 ** (k / self.checkpoints_per_decade) > step - self.eval_every


#: TrainConfig fields a resumed run may change; any other change would not continue the same run.
RESUME_CHANGEABLE = frozenset(
    {
        "max_steps",
        "stop_id_acc",
        "stop_ood_acc",
        "stop_train_acc",
        "stop_patience",
        "device",
        "threads",
        "log_to",
    }
)


#: The paper's recipe (AdamW lr 1e-4, weight decay 0.1, batch 512, 2,000 warm-up steps then
#: constant, clipping 1.0, the 8-layer GPT-2-shaped model): every task's ``"paper"`` training
#: preset unless it registers its own.
PAPER = TrainConfig(
    max_steps=1_500_000,
    batch_size=512,
    lr=1e-4,
    weight_decay=0.1,
    betas=(0.9, 0.999),
    warmup_steps=2000,
    eval_every=1000,
    eval_size=3000,
    dense_until=20_000,
    model_size="paper",
)

#: Shared by the tutorial presets of the paper's tasks: lr 2e-3 with 200 warm-up steps and weight
#: decay 0.5 grokked the tutorial composition task in the fewest steps of the settings in
#: benchmarks/README.md (comparison changes the learning rate and the decay).
TUTORIAL_RECIPE: dict[str, Any] = dict(
    batch_size=512,
    lr=2e-3,
    weight_decay=0.5,
    warmup_steps=200,
    eval_every=100,
    stop_id_acc=0.95,
    stop_patience=5,
    model_size="tutorial",
)
