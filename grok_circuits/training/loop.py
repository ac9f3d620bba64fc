"""Train a model on a grokking task, with the loss on the answer token only.

One loop, read top to bottom (nanoGPT's ``train.py`` is the model)::

    for step in 1..max_steps:
        train_step: batch -> loss on the answer position -> gradient hooks -> clipping -> AdamW
                    (learning rate warmed up)
        evaluate every ``eval_every`` steps: loss and accuracy on every probe, the weight norm,
                    the progress measures
        checkpoint when the schedule says so (dense early, log-spaced later, and the last step),
                    and at the memorizing and generalizing steps when first reached
        stop at max_steps, or once ID accuracy has held ``stop_id_acc`` (and the further
                    targets, OOD or training accuracy, are met on average over those evaluations)

:func:`train_step` is the one training step: :func:`train` calls it for every step, and
:func:`grok_circuits.training.throughput.training_throughput` times it.

Grokking happens late, so the checkpoint schedule is log-spaced after ``dense_until``; the steps a
user asks for by name, ``run.saturation_step`` and ``run.grok_step``
(:func:`grok_circuits.runs.run.stage_steps`), are checkpointed too, whatever the schedule. Batches
are a pure function of (seed, step), and the checkpoint holds the optimizer and RNG state, so a run
stopped at step N and resumed computes exactly the metrics of one never stopped. On the CPU the
loop runs with deterministic algorithms, so a seed gives bit-identical weights for any number of
CPU threads, and with one thread per free core unless ``TrainConfig.threads`` says otherwise
(both in :mod:`grok_circuits.training.cpu`).

The loss and the gradient hooks (Grokfast, ⊥Grad, StableMax and your own) are plug-ins chosen by
name in the :class:`TrainConfig` (:mod:`grok_circuits.training.plugins`); the progress measures
logged besides accuracy are a registry too (:mod:`grok_circuits.training.progress_measures`).
"""

import contextlib
import math
import time
import warnings
from collections.abc import Sequence
from dataclasses import fields, replace
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import Tensor
from tqdm.auto import tqdm

from grok_circuits import backend
from grok_circuits.backend import Model, ModelConfig
from grok_circuits.config import RESUME_CHANGEABLE, TrainConfig
from grok_circuits.io import LockedError, atomic_write_json, hold_lock, read_json
from grok_circuits.model import (
    answer_logits,
    build_model,
    check_loops,
    check_shape,
    config_from_dict,
    load_weights,
    model_config,
    model_weights,
    resolve_device,
    save_config,
)
from grok_circuits.recurrence import depth_overrides, recurrence_of_config, training_iterations
from grok_circuits.runs.run import (
    LOCK_FILE,
    MODEL_CONFIG_FILE,
    TASK_FILE,
    TRAIN_CONFIG_FILE,
    CheckpointStore,
    Run,
    open_run,
    read_metrics,
    stage_steps,
    write_metrics,
)
from grok_circuits.tasks import Split, TaskData
from grok_circuits.training.cpu import cpu_threads, deterministic_on_cpu
from grok_circuits.training.curriculum import HopCurriculum
from grok_circuits.training.plugins import GradHook, LossFn, grad_hooks_for, loss_for
from grok_circuits.training.precision import autocast, resolve_precision, training_forward
from grok_circuits.training.progress_measures import ProgressMeasures
from grok_circuits.training.tracking import MetricsMirror, check_trackers


# ----------------------------------------------------------------------------- pieces
def answer_loss(
    model: Model,
    batch: Split,
    loss: LossFn = F.cross_entropy,
    precision: str = "float32",
) -> Tensor:
    """The loss (cross-entropy unless told) on the answer token only (the prompt tokens are never
    predicted). ``precision="bf16"`` runs the forward pass under bf16 autocast; the loss is
    always computed from float32 logits (:mod:`grok_circuits.training.precision`)."""
    with autocast(precision, batch.tokens.device):
        logits = answer_logits(model, batch.tokens, batch.answer_pos)
    return loss(logits.float(), batch.answers)


@torch.no_grad()
def evaluate(model: Model, probes: dict[str, Split], batch_size: int = 4096) -> dict[str, float]:
    """``{probe}_acc`` and ``{probe}_loss`` (mean over the probe) for each probe."""
    was_training = model.training
    model.eval()
    out = {}
    for name, split in probes.items():
        correct, loss_sum = 0, 0.0
        for i in range(0, len(split), batch_size):
            b = split.select(slice(i, i + batch_size))
            logits = answer_logits(model, b.tokens, b.answer_pos)
            loss_sum += F.cross_entropy(logits, b.answers, reduction="sum").item()
            correct += int((logits.argmax(-1) == b.answers).sum())
        n = max(len(split), 1)
        out[f"{name}_acc"] = correct / n
        out[f"{name}_loss"] = loss_sum / n
    model.train(was_training)
    return out


def batch_indices(n: int, batch_size: int | None, seed: int, step: int) -> Tensor | slice:
    """Indices of the batch of ``step`` (1-based): epoch-wise shuffling, a pure function of the
    arguments so that resuming needs no sampler state. The last partial batch is dropped."""
    if batch_size is None or batch_size >= n:
        return slice(None)
    per_epoch = n // batch_size
    epoch, k = divmod(step - 1, per_epoch)
    g = torch.Generator().manual_seed(seed * 1_000_003 + epoch)
    return torch.randperm(n, generator=g)[k * batch_size : (k + 1) * batch_size]


def make_optimizer(model: Model, cfg: TrainConfig) -> torch.optim.AdamW:
    """AdamW with decay on matrices, embeddings and the attention's query, key and value biases
    (the first parameter group, whose decay :func:`train_step` sets each step when the config
    schedules it); LayerNorm and the other biases undecayed
    (:func:`grok_circuits.backend.decays`)."""
    decay, no_decay = backend.param_groups(model)
    return torch.optim.AdamW(
        [
            {"params": decay, "weight_decay": cfg.weight_decay},
            {"params": no_decay, "weight_decay": 0.0},
        ],
        lr=cfg.lr,
        betas=cfg.betas,
    )


def lr_at(cfg: TrainConfig, step: int) -> float:
    """Linear warm-up over ``warmup_steps``, then constant (the paper's schedule); with
    ``cfg.lr_decay = (start, end, factor)``, falling linearly after ``start`` to ``factor * lr``
    at ``end``, then constant."""
    lr = cfg.lr if cfg.warmup_steps == 0 else cfg.lr * min(1.0, step / cfg.warmup_steps)
    if cfg.lr_decay is not None:
        start, end, factor = cfg.lr_decay
        if step > start:
            lr = lr * (1 + (factor - 1) * min(1.0, (step - start) / (end - start)))
    return lr


def weight_decay_at(cfg: TrainConfig, step: int) -> float:
    """``cfg.weight_decay``, times ``factor`` after ``step`` where ``cfg.weight_decay_after =
    (step, factor)``."""
    if cfg.weight_decay_after is not None and step > cfg.weight_decay_after[0]:
        return cfg.weight_decay * cfg.weight_decay_after[1]
    return cfg.weight_decay


def weight_norm(model: Model) -> float:
    """The L2 norm of every parameter together, as one vector."""
    return math.sqrt(sum(float(p.detach().pow(2).sum()) for p in backend.parameters(model)))


# ----------------------------------------------------------------------------- one step
def train_step(
    model: Model,
    optimizer: torch.optim.Optimizer,
    split: Split,
    step: int,
    cfg: TrainConfig,
    *,
    forward: Model,
    loss_fn: LossFn,
    hooks: Sequence[GradHook],
    params: Sequence[Tensor] | None = None,
) -> Tensor:
    """Training step ``step`` (1-based), the one :func:`train` takes and
    :func:`grok_circuits.training.throughput.training_throughput` times: the batch of ``step``
    (:func:`batch_indices`), the learning rate and weight decay of ``step`` (:func:`lr_at`,
    :func:`weight_decay_at`), the loss on the answer
    token (:func:`answer_loss`, through ``forward`` under ``cfg.precision``), backward, the
    gradient hooks, clipping to ``cfg.grad_clip`` (unless None), and the optimizer's step.

    Args:
        model: the model whose parameters are trained (its gradients are set to None first).
        optimizer: from :func:`make_optimizer`.
        split: the training split, on the model's device.
        step: which step this is; with ``cfg.seed`` it fixes the batch, so resuming needs no
            sampler state.
        cfg: the run's :class:`TrainConfig`.
        forward: what the forward pass calls: ``model``, or the compiled model of
            :func:`~grok_circuits.training.precision.training_forward`.
        loss_fn: the loss, from :func:`~grok_circuits.training.plugins.loss_for`.
        hooks: the gradient hooks, from
            :func:`~grok_circuits.training.plugins.grad_hooks_for`; they keep state across
            steps, so build them once per run.
        params: ``backend.parameters(model)``, if the caller has them (listing them costs a walk
            over the model every step).

    Returns:
        The loss of the batch, before the step (a 0-dim tensor; reading it waits for the device).
    """
    params = backend.parameters(model) if params is None else params
    batch = split.select(batch_indices(len(split), cfg.batch_size, cfg.seed, step))
    lr = lr_at(cfg, step)
    for group in optimizer.param_groups:
        group["lr"] = lr
    if cfg.weight_decay_after is not None:  # make_optimizer's first group is the decayed one
        optimizer.param_groups[0]["weight_decay"] = weight_decay_at(cfg, step)
    fused = backend.fused_layer_norm(model) if cfg.fused_layer_norm else contextlib.nullcontext()
    with training_iterations(model, cfg, step), fused:  # a recurrent core may draw its count
        loss = answer_loss(forward, batch, loss_fn, cfg.precision)
    optimizer.zero_grad(set_to_none=True)
    loss.backward()
    for hook in hooks:
        hook(params)
    if cfg.grad_clip is not None:
        torch.nn.utils.clip_grad_norm_(params, cfg.grad_clip)
    optimizer.step()
    return loss.detach()


# ----------------------------------------------------------------------------- the loop
def train(
    task: TaskData,
    cfg: TrainConfig | None = None,
    *,
    out: str | Path,
    model_cfg: ModelConfig | None = None,
    resume: bool = False,
    progress: bool = True,
) -> Run:
    """Train a model on ``task`` and save the run to ``out``.

    Args:
        task: from :func:`grok_circuits.make_task`.
        cfg: the :class:`TrainConfig` (defaults if None).
        out: the run folder (created). It must be empty unless ``resume=True``.
        model_cfg: a model config; default ``model_config(task, cfg.model_size)``.
        resume: continue the run in ``out`` from its last intact checkpoint. The stored task,
            model and training configs are used; ``cfg`` (or None) may only change the
            ``RESUME_CHANGEABLE`` fields: ``max_steps``, the stopping rule and ``device``.
        progress: show a tqdm bar with train / ID / OOD accuracy.

    Returns:
        The :class:`Run`, whose ``metrics`` hold the history.

    While it trains, ``out/train.lock`` keeps any other process from training into ``out``: a
    second ``train`` of the same folder raises a RuntimeError naming the process that holds it.
    """
    out = Path(out)
    made = not out.exists()
    out.mkdir(parents=True, exist_ok=True)
    try:
        with hold_lock(out / LOCK_FILE):
            return _train(task, cfg, out, model_cfg, resume, progress)
    except LockedError as err:
        raise RuntimeError(
            f"{out} is being trained by process {err.holder} (it holds {err.path}); wait for "
            "that run to finish or stop it, then resume"
        ) from None
    finally:
        if made and not any(out.iterdir()):  # refused before it wrote anything
            out.rmdir()


def _train(task, cfg, out: Path, model_cfg, resume: bool, progress: bool) -> Run:
    """:func:`train`, holding the run's lock."""
    store = CheckpointStore(out)
    resumed = None
    if resume and (out / TRAIN_CONFIG_FILE).is_file():
        done = already_finished(out, task, cfg)
        if done is not None:
            print(
                f"{out}: already finished at step {done}; nothing to train. To train further, "
                "resume with a larger max_steps (CLI --steps) or stopping rule (--stop-id-acc)"
            )
            return open_run(out)
        cfg, model_cfg = _check_resume(out, task, cfg)
        resumed = store.latest_resumable()
        if resumed is None:
            warnings.warn(f"no intact checkpoint in {out}; starting from step 0", stacklevel=3)
        else:
            print(f"{out}: resumed from step {resumed[0]}")
    elif any(p.name != LOCK_FILE for p in out.iterdir()):
        if (out / TRAIN_CONFIG_FILE).is_file():
            raise FileExistsError(
                f"{out} already holds a run; pass resume=True (CLI: --resume) to continue it, "
                "or choose another --out"
            )
        raise FileExistsError(f"{out} is not empty; train into a new or empty folder")
    cfg = cfg or TrainConfig()
    device = resolve_device(cfg.device)
    cfg = replace(cfg, precision=resolve_precision(cfg.precision, device))  # stored as used
    loss_fn, hooks = loss_for(cfg), grad_hooks_for(cfg)  # unknown names fail before any file
    check_trackers(cfg.log_to)
    _targets(cfg, task.key_probes)  # a target the task has no probe for fails before any file

    model_cfg = model_cfg or model_config(task, cfg.model_size, **depth_overrides(cfg))
    check_shape(model_cfg)
    check_loops(model_cfg.n_layers, cfg.n_loops)
    recurrence = recurrence_of_config(cfg, model_cfg.n_layers)
    width = max(s.tokens.shape[1] for s in task.splits.values())  # its probes are evaluated too
    if model_cfg.d_vocab < len(task.vocab) or model_cfg.n_ctx < width:
        raise ValueError(
            f"model_cfg (d_vocab={model_cfg.d_vocab}, n_ctx={model_cfg.n_ctx}) is too small for "
            f"the task (vocab {len(task.vocab)}, prompts of up to {width} tokens)"
        )
    out.mkdir(parents=True, exist_ok=True)
    atomic_write_json(
        out / TASK_FILE,
        {"name": task.name, "params": task.params.to_dict(), "fingerprint": task.fingerprint()},
    )
    save_config(model_cfg, out / MODEL_CONFIG_FILE)
    atomic_write_json(out / TRAIN_CONFIG_FILE, cfg.to_dict())

    model = build_model(model_cfg, seed=cfg.seed, device=device, recurrence=recurrence)
    optimizer = make_optimizer(model, cfg)
    step, metrics = 0, []
    if resumed is not None:
        step, weights, state = resumed
        load_weights(model, weights)
        optimizer.load_state_dict(state["optimizer"])
        torch.set_rng_state(state["torch_rng"])
        for hook, hook_state in zip(hooks, state.get("grad_hooks", [])):
            hook.load_state_dict(_to_device(hook_state, device))
        metrics = [row for row in read_metrics(out) if row["step"] <= step]
        store.truncate_after(step)
    elapsed0 = metrics[-1]["time"] if metrics else 0.0

    train_split = task.train.to(device)
    curriculum = (
        None if cfg.hop_curriculum is None else HopCurriculum(task, cfg.hop_curriculum, device)
    )
    probes = {k: v.to(device) for k, v in task.probes(cfg.eval_size).items()}
    measures = ProgressMeasures(task, loss_fn, device=device)
    key = task.key_probes
    bar = tqdm(
        total=cfg.max_steps,
        initial=step,
        disable=not progress,
        desc=task.name,
        unit="step",
        dynamic_ncols=True,
    )
    params = backend.parameters(model)
    forward = training_forward(model, cfg)
    mirror = MetricsMirror(cfg.log_to, out, {"task": read_json(out / TASK_FILE), **cfg.to_dict()})
    start = time.perf_counter()

    def evaluate_and_log() -> dict:
        row = {"step": step, "time": round(elapsed0 + time.perf_counter() - start, 3)}
        row["lr"] = lr_at(cfg, step)
        if cfg.weight_decay_after is not None:
            row["weight_decay"] = weight_decay_at(cfg, step)
        row.update(evaluate(model, probes))
        row["weight_norm"] = weight_norm(model)
        row.update(measures(model))
        if curriculum is not None:
            row["curriculum_hops"] = curriculum.stage([*metrics, row])
        metrics.append(row)
        write_metrics(out, metrics)
        mirror.log(row)
        bar.set_postfix(_bar_postfix(metrics, key, _stop_progress(metrics, key, cfg)))
        return row

    with bar, mirror, deterministic_on_cpu(device), cpu_threads(device, cfg.threads):
        if step == 0 and not metrics:  # resumed from step 0, it is already evaluated
            evaluate_and_log()
            _checkpoint_if_due(store, cfg, step, model, optimizer, hooks)
        stop = _should_stop(metrics, key, cfg)
        model.train()
        while step < cfg.max_steps and not stop:
            step += 1
            train_step(
                model,
                optimizer,
                train_split if curriculum is None else curriculum.rows(curriculum.stage(metrics)),
                step,
                cfg,
                forward=forward,
                loss_fn=loss_fn,
                hooks=hooks,
                params=params,
            )
            bar.update(1)
            if step % cfg.eval_every == 0 or step == cfg.max_steps:
                evaluate_and_log()
                stop = _should_stop(metrics, key, cfg)
                # the stages a user loads by name (run.grok_step) are kept whatever the schedule
                force = stop or step in stage_steps(metrics, key).values()
                _checkpoint_if_due(store, cfg, step, model, optimizer, hooks, force=force)
        # The bar counted to max_steps; a run the rule stopped ends there, at 100%, saying why.
        if 0 < step < bar.total:
            bar.total = step
        if metrics:
            why = _why_stopped(metrics, key, cfg, stop)
            bar.set_postfix(_bar_postfix(metrics, key, why, label="stopped"))
    return open_run(out)


def _resume_state(optimizer: torch.optim.Optimizer, hooks: list) -> dict:
    state = {"optimizer": optimizer.state_dict(), "torch_rng": torch.get_rng_state()}
    if hooks:  # a gradient filter's running average is part of where the run is
        state["grad_hooks"] = [_to_device(h.state_dict(), "cpu") for h in hooks]
    return state


def _to_device(state, device):
    """``state`` (nested dicts, lists and tensors) with every tensor on ``device``."""
    if isinstance(state, Tensor):
        return state.to(device)
    if isinstance(state, dict):
        return {k: _to_device(v, device) for k, v in state.items()}
    if isinstance(state, (list, tuple)):
        return type(state)(_to_device(v, device) for v in state)
    return state


def _checkpoint_if_due(store, cfg, step, model, optimizer, hooks, force: bool = False) -> None:
    if force or cfg.is_checkpoint_step(step):
        store.save(step, model_weights(model), _resume_state(optimizer, hooks))
        store.drop_states(cfg.keep_states)


# The stopping rule. ID accuracy must hold ``stop_id_acc`` at each of the last ``stop_patience``
# evaluations: that is the run having grokked, not one lucky evaluation. The further targets (OOD,
# training accuracy) are met by their mean over those evaluations: OOD comparison creeps up to its
# target and then swings around it (0.88 to 0.94 from one evaluation to the next on the tutorial
# run), so asking each evaluation to meet it restarted the count at every dip, and a run whose OOD
# sat on its target stopped only by luck (five in a row at even odds: 62 evaluations on average).
def _targets(cfg: TrainConfig, key: dict[str, str]) -> dict[str, float]:
    """The stopping rule's further targets by role (``"ood"``, ``"train"``), where set."""
    targets = {"ood": cfg.stop_ood_acc, "train": cfg.stop_train_acc}
    if cfg.stop_ood_acc is not None and "ood" not in key:
        raise ValueError(
            "TrainConfig.stop_ood_acc is set but the task names no OOD probe (key_probes['ood']); "
            "unset stop_ood_acc"
        )
    return {role: t for role, t in targets.items() if t is not None}


def _held_evals(metrics: list[dict], key: dict[str, str], cfg: TrainConfig) -> int:
    """How many of the latest evaluations in a row have ID accuracy >= ``stop_id_acc`` (0
    without the rule)."""
    if cfg.stop_id_acc is None:
        return 0
    held = 0
    for row in reversed(metrics):
        if row[f"{key['id']}_acc"] < cfg.stop_id_acc:
            break
        held += 1
    return held


def _target_means(metrics: list[dict], key: dict[str, str], cfg: TrainConfig) -> dict[str, float]:
    """Each further target's accuracy, by role, averaged over the last ``stop_patience``
    evaluations (fewer, if the run has fewer)."""
    rows = metrics[-cfg.stop_patience :]
    return {
        role: sum(row[f"{key[role]}_acc"] for row in rows) / max(len(rows), 1)
        for role in _targets(cfg, key)
    }


def _should_stop(metrics: list[dict], key: dict[str, str], cfg: TrainConfig) -> bool:
    """Whether the stopping rule is met: ID accuracy has held ``stop_id_acc`` for
    ``stop_patience`` evaluations, and over them OOD and training accuracy average at least
    ``stop_ood_acc`` and ``stop_train_acc`` (where set). Never without ``stop_id_acc``."""
    if cfg.stop_id_acc is None or _held_evals(metrics, key, cfg) < cfg.stop_patience:
        return False
    means, targets = _target_means(metrics, key, cfg), _targets(cfg, key)
    return all(means[role] >= target for role, target in targets.items())


#: How the progress bar names the probes the stopping rule reads.
_ROLE_NAMES = {"id": "ID", "ood": "OOD", "train": "train"}


def _stop_progress(metrics: list[dict], key: dict[str, str], cfg: TrainConfig) -> str | None:
    """How far the stopping rule is, for the progress bar, e.g. ``ID>=0.95 held 3/5 evals, OOD
    mean 0.88/0.9``; None without a rule."""
    if cfg.stop_id_acc is None:
        return None
    held = min(_held_evals(metrics, key, cfg), cfg.stop_patience)
    parts = [f"ID>={cfg.stop_id_acc:g} held {held}/{cfg.stop_patience} evals"]
    targets = _targets(cfg, key)
    for role, mean in _target_means(metrics, key, cfg).items():
        parts.append(f"{_ROLE_NAMES[role]} mean {mean:.2f}/{targets[role]:g}")
    return ", ".join(parts)


def _why_stopped(metrics: list[dict], key: dict[str, str], cfg: TrainConfig, stop: bool) -> str:
    """Why training ended: the stopping rule (at which step), or ``max_steps``."""
    progress = _stop_progress(metrics, key, cfg)
    if stop:
        return f"rule met at step {metrics[-1]['step']} ({progress})"
    unmet = f" (rule not met: {progress})" if progress else ""
    return f"max_steps {cfg.max_steps} reached{unmet}"


def _bar_postfix(
    metrics: list[dict], key: dict[str, str], status: str | None, label: str = "stop"
) -> dict:
    """The progress bar's postfix: the latest accuracy of each key probe, and ``status``."""
    postfix = {role: f"{metrics[-1][f'{probe}_acc']:.2f}" for role, probe in key.items()}
    if status is not None:
        postfix[label] = status
    return postfix


def already_finished(out: str | Path, task: TaskData, cfg: TrainConfig | None) -> int | None:
    """The step the run in ``out`` ended at, if resuming it with ``cfg`` (None: its stored
    config) would train nothing more: its last evaluation has an intact checkpoint and reached
    ``max_steps`` or the stopping rule. None otherwise, or if ``out`` holds no run."""
    out = Path(out)
    if not (out / TRAIN_CONFIG_FILE).is_file():
        return None
    cfg, _ = _check_resume(out, task, cfg)
    metrics, steps = read_metrics(out), CheckpointStore(out).intact_steps()
    if not metrics or not steps or steps[-1] != metrics[-1]["step"]:
        return None
    last = metrics[-1]["step"]
    if last >= cfg.max_steps or _should_stop(metrics, task.key_probes, cfg):
        return last
    return None


def _check_resume(out: Path, task: TaskData, cfg: TrainConfig | None):
    """The stored configs, with ``cfg``'s changeable fields; refuse any other change."""
    stored_task = read_json(out / TASK_FILE)
    stored_task.pop("fingerprint", None)
    if stored_task != {"name": task.name, "params": task.params.to_dict()}:
        raise ValueError(
            f"cannot resume {out}: it was trained on {stored_task}, not on "
            f"{task.name} {task.params.to_dict()}; pass the same task"
        )
    stored = TrainConfig.from_dict(read_json(out / TRAIN_CONFIG_FILE))
    model_cfg = config_from_dict(read_json(out / MODEL_CONFIG_FILE))
    if cfg is None:
        return stored, model_cfg
    if cfg.precision == "auto":  # the run resolved it when it started; it keeps that
        cfg = replace(cfg, precision=stored.precision)
    differ = sorted(
        f.name
        for f in fields(TrainConfig)
        if f.name not in RESUME_CHANGEABLE and getattr(stored, f.name) != getattr(cfg, f.name)
    )
    if differ:
        raise ValueError(
            f"cannot resume {out} with a different {differ}: resuming continues the same run; "
            f"only {sorted(RESUME_CHANGEABLE)} may change (or pass cfg=None)"
        )
    return cfg, model_cfg
