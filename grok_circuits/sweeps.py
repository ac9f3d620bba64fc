"""Sweeps: a grid or a list of training runs, on a local Ray instance or a Ray cluster.

The paper's results are sweeps over phi, data size, weight decay and depth. A sweep is written as
a spec (a YAML file or a dict)::

    task: composition
    preset: tutorial
    grid:              # every combination
      seed: [0, 1]
      phi: [4.0, 8.0]  # task parameters and TrainConfig fields, by name
    train:             # fixed TrainConfig fields
      max_steps: 100
      model_size: tiny

Keys: ``task`` (required), ``preset`` (task and training preset, default ``tutorial``), ``grid``
(name -> list of values: every combination), ``runs`` (a list of {name: value}: one trial each,
crossed with the grid when both are given), ``task_params`` (fixed task parameters), ``train``
(fixed TrainConfig fields) and ``resources`` (``cpus`` and ``gpus`` per trial).

A name in ``grid`` or ``runs`` is a parameter of the task or a field of
:class:`~grok_circuits.TrainConfig`. ``seed`` is both, and a bare ``seed`` seeds both the data
and the weights (as ``grok-circuits train --seed`` does); ``task.seed`` or ``train.seed`` sets
one alone, and any name may be written that way. Every trial trains with one CPU thread unless
the spec sets ``threads``, so that trials side by side do not fight over cores.

Every trial is an ordinary run folder, ``OUT/<trial name>`` (e.g. ``OUT/phi=4.0,seed=0``), and
``OUT/sweep.json`` keeps the spec. Fault tolerance is the runs' exact resume: each trial trains
with ``resume=True``, so starting a sweep again skips its finished trials and continues a trial
that was killed from its last checkpoint, computing exactly the metrics an uninterrupted sweep
would; Ray also retries a trial whose worker died (``max_retries``). A lock file per trial
(``OUT/.locks``) keeps one trial from ever training in two places at once.

The engine is Ray (``pip install -e ".[sweep]"``): a local instance with this machine's cores,
one trial per GPU where there are GPUs, or an existing cluster (``address=`` or
``RAY_ADDRESS``), whose workers must see ``OUT`` (a shared file system) and have grok_circuits
installed. ``engine="local"`` runs the trials one after another in this process.

:func:`load_sweep` reads a sweep folder back; :meth:`Sweep.to_frame` has one row per trial and
:meth:`Sweep.report` the mean and spread over seeds of the steps to memorize and to generalize
(:attr:`Run.saturation_step`, :attr:`Run.grok_step`) and of the final accuracies.
"""

import contextlib
import dataclasses
import difflib
import fcntl
import io
import itertools
import json
import os
import shutil
import time
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Literal

from grok_circuits.checks import check_field_types
from grok_circuits.config import TrainConfig
from grok_circuits.io import atomic_write_json, read_json

SWEEP_FILE = "sweep.json"
LOCK_DIR = ".locks"
SPEC_KEYS = ("task", "preset", "grid", "runs", "task_params", "train", "resources")
#: TrainConfig fields stored as tuples (YAML gives lists).
_TUPLE_FIELDS = ("betas", "grad_hooks", "log_to")


@dataclass(frozen=True)
class Trial:
    """One run of a sweep: its folder name, the task and its parameters, and the TrainConfig
    fields that differ from the preset's."""

    name: str
    task: str
    preset: str
    task_params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)

    def config(self) -> TrainConfig:
        """The trial's TrainConfig: the task's training preset with the trial's fields."""
        from grok_circuits.training.presets import train_config

        fields = dict(self.train)
        for key in _TUPLE_FIELDS:
            if isinstance(fields.get(key), list):
                fields[key] = tuple(fields[key])
        return dataclasses.replace(train_config(self.task, self.preset), **fields)

    def make_task(self):
        from grok_circuits.tasks import make_task

        return make_task(self.task, preset=self.preset, **self.task_params)


@dataclass(frozen=True)
class SweepSpec:
    """What to sweep; see the module docstring for the keys. :meth:`trials` expands it."""

    task: str
    preset: str = "tutorial"
    grid: dict = field(default_factory=dict)
    runs: tuple = ()
    task_params: dict = field(default_factory=dict)
    train: dict = field(default_factory=dict)
    resources: dict = field(default_factory=dict)

    @classmethod
    def from_dict(cls, d: Mapping) -> "SweepSpec":
        if not isinstance(d, Mapping):
            raise ValueError(f"a sweep spec is a mapping of {list(SPEC_KEYS)}, got {d!r}")
        unknown = sorted(set(d) - set(SPEC_KEYS))
        if unknown:
            raise ValueError(f"unknown sweep spec key(s) {unknown}; the keys are {list(SPEC_KEYS)}")
        if "task" not in d:
            raise ValueError("the sweep spec needs a task: e.g. 'task: composition'")
        for key in ("grid", "task_params", "train", "resources"):
            if not isinstance(d.get(key, {}), Mapping):
                raise ValueError(f"sweep spec '{key}' must be a mapping of names to values")
        grid = dict(d.get("grid") or {})
        for name, values in grid.items():
            if not isinstance(values, list) or not values:
                raise ValueError(
                    f"grid '{name}' must be a non-empty list of values, e.g. {name}: [0, 1]; "
                    f"got {values!r}"
                )
        runs = d.get("runs") or []
        if not isinstance(runs, list) or not all(isinstance(r, Mapping) for r in runs):
            raise ValueError("sweep spec 'runs' must be a list of mappings, e.g. - {phi: 4.0}")
        resources = dict(d.get("resources") or {})
        bad = sorted(set(resources) - {"cpus", "gpus"})
        if bad:
            raise ValueError(f"unknown resources {bad}; give cpus and/or gpus per trial")
        spec = cls(
            task=str(d["task"]),
            preset=str(d.get("preset", "tutorial")),
            grid=grid,
            runs=tuple(dict(r) for r in runs),
            task_params=dict(d.get("task_params") or {}),
            train=dict(d.get("train") or {}),
            resources=resources,
        )
        spec.trials()  # every name and value is checked now, before anything trains
        return spec

    def to_dict(self) -> dict:
        d = dataclasses.asdict(self)
        d["runs"] = list(self.runs)
        return d

    def trials(self) -> list[Trial]:
        """Every trial, grid combinations crossed with the list of runs, in a stable order."""
        from grok_circuits.tasks import make_params, task_names

        if self.task not in task_names():
            raise ValueError(f"unknown task {self.task!r}; the tasks are {task_names()}")
        params_cls = type(make_params(self.task, self.preset))
        task_fields = {f.name for f in dataclasses.fields(params_cls)}
        train_fields = {f.name for f in dataclasses.fields(TrainConfig)}
        _check_names(self.task_params, task_fields, "task_params", f"{self.task} parameter")
        _check_names(self.train, train_fields, "train", "TrainConfig field")
        combos = [dict(zip(self.grid, values)) for values in itertools.product(*self.grid.values())]
        rows = [{**run, **combo} for run in (self.runs or ({},)) for combo in combos]
        trials, names = [], set()
        for row in rows:
            task_params, train = dict(self.task_params), {"threads": 1, **self.train}
            for name, value in row.items():
                for where in _resolve(name, task_fields, train_fields):
                    key = name.split(".", 1)[-1]
                    (task_params if where == "task" else train)[key] = value
            check_field_types(params_cls, task_params)
            check_field_types(TrainConfig, train)
            trial = Trial(_trial_name(row), self.task, self.preset, task_params, train)
            make_params(self.task, self.preset, **task_params)  # the task's own checks
            trial.config()
            if trial.name in names:
                raise ValueError(f"two trials of the sweep are both {trial.name!r}; remove one")
            names.add(trial.name)
            trials.append(trial)
        return trials


def load_spec(spec: "SweepSpec | Mapping | str | os.PathLike") -> SweepSpec:
    """A :class:`SweepSpec` from itself, a dict, or a YAML file."""
    if isinstance(spec, SweepSpec):
        return spec
    if isinstance(spec, Mapping):
        return SweepSpec.from_dict(spec)
    import yaml

    path = Path(spec)
    if not path.is_file():
        raise FileNotFoundError(f"no sweep spec at {path}")
    try:
        d = yaml.safe_load(path.read_text())
    except yaml.YAMLError as err:
        mark = getattr(err, "problem_mark", None)
        where = f" at line {mark.line + 1}" if mark is not None else ""
        problem = getattr(err, "problem", err)
        raise ValueError(f"{path} is not valid YAML{where}: {problem}") from None
    return SweepSpec.from_dict(d or {})


def _check_names(d: Mapping, known: set[str], where: str, what: str) -> None:
    for name in d:
        if name not in known:
            raise ValueError(f"sweep spec '{where}': unknown {what} {name!r}{_close(name, known)}")


def _close(name: str, known) -> str:
    close = difflib.get_close_matches(name, sorted(known), n=1)
    return f"; did you mean {close[0]!r}?" if close else ""


def _resolve(name: str, task_fields: set[str], train_fields: set[str]) -> list[str]:
    """Where a swept name goes: ``["task"]``, ``["train"]`` or both (a bare ``seed``)."""
    if name.startswith(("task.", "train.")):
        where, key = name.split(".", 1)
        if key not in (task_fields if where == "task" else train_fields):
            known = task_fields if where == "task" else train_fields
            raise ValueError(f"sweep spec: {name!r} names no {where} field{_close(key, known)}")
        return [where]
    places = [w for w, f in (("task", task_fields), ("train", train_fields)) if name in f]
    if name == "seed":
        return places  # seeds the data and the weights, as `grok-circuits train --seed` does
    if len(places) == 2:
        raise ValueError(
            f"sweep spec: {name!r} is both a task parameter and a TrainConfig field; write "
            f"task.{name} or train.{name}"
        )
    if not places:
        raise ValueError(
            f"sweep spec: {name!r} is neither a task parameter nor a TrainConfig field"
            f"{_close(name, task_fields | train_fields)}"
        )
    return places


def _trial_name(row: Mapping) -> str:
    if not row:
        return "run"
    parts = []
    for name, value in sorted(row.items()):
        text = json.dumps(value) if not isinstance(value, str) else value
        parts.append(f"{name}={text}".replace("/", "_").replace(" ", ""))
    return ",".join(parts)


# ----------------------------------------------------------------------------- running
def run_trial(trial: Trial, out: str | os.PathLike, lock_wait: float = 600.0) -> dict:
    """Train one trial into ``out`` (resuming it; a finished one trains nothing) and return
    ``{"trial", "status", "from_step", "last_step"}`` with status ``"trained"`` (from step 0),
    ``"resumed"`` or ``"skipped"`` (finished before).

    While another process trains the same trial (say a worker of a sweep that was stopped and is
    still winding down), this waits up to ``lock_wait`` seconds for it, then resumes or skips.
    """
    from grok_circuits.runs.run import TRAIN_CONFIG_FILE, CheckpointStore
    from grok_circuits.training.loop import already_finished, train

    out = Path(out)
    locks = out.parent / LOCK_DIR
    locks.mkdir(parents=True, exist_ok=True)
    with open(locks / f"{trial.name}.lock", "w") as lock:
        _lock(lock, trial.name, lock_wait)
        task, cfg = trial.make_task(), trial.config()
        if out.exists() and not (out / TRAIN_CONFIG_FILE).is_file():
            shutil.rmtree(out)  # killed before its configs were written: nothing trained yet
        started = (out / TRAIN_CONFIG_FILE).is_file()
        if started and already_finished(out, task, cfg) is not None:
            status, from_step = "skipped", None
        else:
            steps = CheckpointStore(out).intact_steps() if started else []
            from_step = steps[-1] if steps else 0
            status = "resumed" if from_step else "trained"
        with contextlib.redirect_stdout(io.StringIO()):  # "resumed from step ..." is returned
            run = train(task, cfg, out=out, resume=True, progress=False)
    return {
        "trial": trial.name,
        "status": status,
        "from_step": from_step,
        "last_step": run.last_step,
    }


def _lock(lock, name: str, wait: float) -> None:
    deadline = time.monotonic() + wait
    while True:
        try:
            fcntl.flock(lock, fcntl.LOCK_EX | fcntl.LOCK_NB)
            return
        except BlockingIOError:
            if time.monotonic() > deadline:
                raise RuntimeError(
                    f"trial {name} has been training elsewhere for over {wait:.0f} s; stop that "
                    "sweep first"
                ) from None
            time.sleep(0.5)


def sweep(
    spec: "SweepSpec | Mapping | str | os.PathLike",
    out: str | os.PathLike,
    *,
    engine: Literal["ray", "local"] = "ray",
    address: str | None = None,
    max_retries: int = 3,
    progress: bool = True,
) -> "Sweep":
    """Run every trial of ``spec`` into its own run folder under ``out``.

    Args:
        spec: a :class:`SweepSpec`, a dict, or the path of a YAML file (module docstring).
        out: the sweep folder (created). Starting a sweep again on the same folder resumes it:
            finished trials are skipped, interrupted ones continue from their last checkpoint.
        engine: ``"ray"`` (default): trials in parallel on Ray; ``"local"``: one after another
            in this process, no Ray needed.
        address: a Ray cluster's address (default ``$RAY_ADDRESS``, else a local instance with
            this machine's cores and GPUs). A Ray instance this process already started is used
            as it is.
        max_retries: how often Ray starts a trial again whose worker died (it resumes).
        progress: print a line per finished trial.

    Returns:
        The :class:`Sweep`. Raises RuntimeError naming the trials that failed, after the
        others finished.
    """
    spec = load_spec(spec)
    trials = spec.trials()
    out = Path(out)
    out.mkdir(parents=True, exist_ok=True)
    stored = out / SWEEP_FILE
    if stored.is_file() and read_json(stored)["spec"] != json.loads(json.dumps(spec.to_dict())):
        raise ValueError(
            f"{out} holds another sweep ({stored}); resume it with the same spec, or choose "
            "another --out"
        )
    atomic_write_json(stored, {"spec": spec.to_dict(), "trials": [t.name for t in trials]})
    if engine == "local":
        results, failed = [], {}
        for trial in trials:
            try:
                results.append(run_trial(trial, out / trial.name))
            except Exception as err:  # the others still run; reported at the end
                failed[trial.name] = f"{type(err).__name__}: {err}"
            else:
                _say(progress, results[-1], len(results), len(trials))
    elif engine == "ray":
        results, failed = _run_on_ray(trials, out, spec.resources, address, max_retries, progress)
    else:
        raise ValueError(f"unknown sweep engine {engine!r}; use 'ray' or 'local'")
    if failed:
        lines = "; ".join(f"{k}: {v}" for k, v in failed.items())
        raise RuntimeError(
            f"{len(failed)} of {len(trials)} trials failed ({lines}); start the sweep again to "
            "retry them (finished trials are skipped)"
        )
    result = load_sweep(out)
    result.results = results
    return result


def _say(progress: bool, result: dict, n: int, total: int) -> None:
    if progress:
        print(
            f"[{n}/{total}] {result['trial']}: {result['status']}"
            + (f" from step {result['from_step']}" if result["status"] == "resumed" else "")
            + f", last step {result['last_step']}",
            flush=True,
        )


def ray_missing_message() -> str:
    return (
        'the sweep engine is Ray: pip install -e ".[sweep]" (or pip install "ray>=2.40"); or run '
        "the trials one after another in this process with --local (engine='local')"
    )


def _run_on_ray(trials, out: Path, resources: Mapping, address, max_retries, progress):
    try:
        import ray
    except ImportError:
        raise ValueError(ray_missing_message()) from None

    started = False
    if not ray.is_initialized():
        address = address or os.environ.get("RAY_ADDRESS")
        ray.init(address=address, include_dashboard=False, configure_logging=False)
        started = True
    try:
        has_gpus = ray.cluster_resources().get("GPU", 0) > 0
        wants_gpu = any(t.config().device in ("auto", "cuda") for t in trials)
        cpus = resources.get("cpus", max(t.config().threads or 1 for t in trials))
        gpus = resources.get("gpus", 1 if has_gpus and wants_gpu else 0)
        remote = ray.remote(num_cpus=cpus, num_gpus=gpus, max_retries=max_retries)(run_trial)
        pending = {remote.remote(t, out / t.name): t for t in trials}
        results, failed = [], {}
        while pending:
            done, _ = ray.wait(list(pending), num_returns=1)
            trial = pending.pop(done[0])
            try:
                results.append(ray.get(done[0]))
            except Exception as err:  # a RayTaskError wraps the trial's error
                cause = getattr(err, "cause", None) or err
                failed[trial.name] = f"{type(cause).__name__}: {cause}".splitlines()[0]
            else:
                _say(progress, results[-1], len(results), len(trials))
        return results, failed
    finally:
        if started:
            ray.shutdown()


# ----------------------------------------------------------------------------- results
@dataclass
class Sweep:
    """A sweep folder read back: its spec, its trials and their runs."""

    path: Path
    spec: SweepSpec
    trials: list[Trial]
    #: what :func:`sweep` did to each trial this time (empty when read by :func:`load_sweep`)
    results: list[dict] = field(default_factory=list)

    def runs(self) -> dict[str, Any]:
        """Trial name -> :class:`~grok_circuits.runs.Run`, for the trials that have started."""
        from grok_circuits.runs.load import load_run
        from grok_circuits.runs.run import TRAIN_CONFIG_FILE

        return {
            t.name: load_run(self.path / t.name)
            for t in self.trials
            if (self.path / t.name / TRAIN_CONFIG_FILE).is_file()
        }

    @property
    def swept(self) -> list[str]:
        """The names that vary between trials (grid and runs keys)."""
        names = list(self.spec.grid)
        for run in self.spec.runs:
            names += [k for k in run if k not in names]
        return names

    def to_frame(self):
        """One row per trial: the swept values, the steps to memorize (training accuracy >=
        0.99) and to generalize (ID accuracy >= 0.95), the last step and the final accuracies
        (None where a trial has not started or not reached a stage)."""
        import pandas as pd

        runs = self.runs()
        rows = []
        for trial, values in zip(self.trials, self._values()):
            row = {"trial": trial.name, **values}
            run = runs.get(trial.name)
            if run is not None and run.metrics:
                last, key = run.metrics[-1], run.key_probes
                row.update(
                    memorize_step=run.saturation_step,
                    generalize_step=run.grok_step,
                    last_step=run.last_step,
                    **{f"{role}_acc": last[f"{probe}_acc"] for role, probe in key.items()},
                )
            rows.append(row)
        return pd.DataFrame(rows)

    def _values(self) -> list[dict]:
        combos = [dict(zip(self.spec.grid, v)) for v in itertools.product(*self.spec.grid.values())]
        return [{**run, **c} for run in (self.spec.runs or ({},)) for c in combos]

    def report(self, by: list[str] | None = None):
        """Mean, standard deviation and count over seeds (every swept name but ``seed``, or
        ``by``) of the steps to memorize and to generalize and of the final accuracies. A trial
        that never reached a stage is left out of that stage's mean and counted in
        ``n_reached``."""
        frame = self.to_frame()
        by = by if by is not None else [n for n in self.swept if "seed" not in n]
        values = [
            c
            for c in ("memorize_step", "generalize_step", "train_acc", "id_acc", "ood_acc")
            if c in frame
        ]
        if not values:
            raise ValueError(f"no trial of {self.path} has metrics yet; run the sweep first")
        frame = frame.copy()
        frame[values] = frame[values].astype(float)
        groups = frame.groupby(by, dropna=False) if by else frame.assign(all="all").groupby("all")
        table = groups[values].agg(["mean", "std"])
        for stage in ("memorize_step", "generalize_step"):
            if stage in frame:
                table[(stage, "n_reached")] = groups[stage].count()
        table[("trials", "n")] = groups.size()
        return table

    def plot(self, x: str | None = None):
        """Steps to memorize and to generalize against ``x`` (default: the first swept name
        that is not a seed, else the seed), one point per trial and the mean over seeds."""
        from grok_circuits.viz.sweep import plot_sweep

        return plot_sweep(self.to_frame(), x or self._default_x())

    def _default_x(self) -> str:
        for name in self.swept:
            if "seed" not in name:
                return name
        if self.swept:  # a sweep over seeds only: one point per seed
            return self.swept[0]
        raise ValueError(f"the sweep in {self.path} varies nothing, so there is no axis to plot")


def load_sweep(path: str | os.PathLike) -> Sweep:
    """Read a sweep folder written by :func:`sweep`."""
    path = Path(path)
    if not (path / SWEEP_FILE).is_file():
        raise FileNotFoundError(f"{path} holds no sweep ({SWEEP_FILE} missing)")
    spec = SweepSpec.from_dict(read_json(path / SWEEP_FILE)["spec"])
    return Sweep(path, spec, spec.trials())


__all__ = ["Sweep", "SweepSpec", "Trial", "load_spec", "load_sweep", "run_trial", "sweep"]
