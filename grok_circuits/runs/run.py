"""The run folder on disk: configs, metrics, checkpoints, and loading it all back.

Layout of a run folder::

    task.json            task name, generator parameters and the data's fingerprint
    model_config.json    the model config (grok_circuits.backend.PORTABLE_FIELDS)
    train_config.json    the TrainConfig
    metrics.json         one row per evaluation (step, loss and accuracy per probe, weight norm)
    checkpoints.json     index of complete checkpoints: step -> file names and SHA-256 digests
    checkpoints/step_0001000.safetensors   model weights at step 1000
    checkpoints/step_0001000.state.pt      optimizer and RNG state (kept for the latest few)
    train.lock           while a process trains the run: its id (grok_circuits.io.hold_lock)

Every file is written atomically (temporary file + rename), and a checkpoint only counts once
its digests are in ``checkpoints.json``. A :class:`Run` verifies the digests of the weights once
(again only if the files change): a truncated or corrupt checkpoint is left out of ``run.steps``
with one warning, and counted in ``run.summary()``.
"""

import functools
import hashlib
import math
import os
import shutil
import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, NoReturn, overload

import torch
from safetensors.torch import load_file, save_file

from grok_circuits.config import TrainConfig
from grok_circuits.io import atomic_write_json, atomic_write_with, read_json
from grok_circuits.model import build_model, config_from_dict, load_weights, resolve_device
from grok_circuits.recurrence import nominal_iterations, recurrence_of_config, set_iterations
from grok_circuits.tasks import TaskData, make_task

if TYPE_CHECKING:  # imported where used: TransformerLens takes seconds to import
    from grok_circuits.backend import Model, ModelConfig

TASK_FILE = "task.json"
MODEL_CONFIG_FILE = "model_config.json"
TRAIN_CONFIG_FILE = "train_config.json"
METRICS_FILE = "metrics.json"
INDEX_FILE = "checkpoints.json"
CHECKPOINT_DIR = "checkpoints"
LOCK_FILE = "train.lock"

#: Training accuracy at which the memorizing stage is reached, and ID accuracy at which a run
#: counts as grokked.
SATURATION_THRESHOLD = 0.99
GROK_THRESHOLD = 0.95
#: The grokking measure's memorization rule (:func:`grokking`): training accuracy at least
#: this, held for this many evaluations in a row.
MEMORIZATION_THRESHOLD = 0.95
MEMORIZATION_HOLD = 2


def weights_name(step: int) -> str:
    return f"step_{step:07d}.safetensors"


def state_name(step: int) -> str:
    return f"step_{step:07d}.state.pt"


def sha256(path: Path) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def skipping(problem: str, step: int, key: str = "weights") -> str:
    """The warning about a damaged checkpoint file: one text wherever it is met (opening the
    run, resuming it), so that a command meeting it twice can say it once."""
    if key == "weights":
        return f"{problem}; skipping step {step} (it is left out of run.steps)"
    return f"{problem}; skipping step {step} (training cannot resume from it)"


class CheckpointStore:
    """Checkpoints of one run: write, list, verify and load them."""

    def __init__(self, run_dir: str | os.PathLike):
        self.root = Path(run_dir)
        self.dir = self.root / CHECKPOINT_DIR

    def index(self) -> dict[int, dict]:
        path = self.root / INDEX_FILE
        if not path.is_file():
            return {}
        return {int(k): v for k, v in read_json(path).items()}

    def _write_index(self, index: dict[int, dict]) -> None:
        atomic_write_json(self.root / INDEX_FILE, {str(k): index[k] for k in sorted(index)})

    @property
    def steps(self) -> list[int]:
        return sorted(self.index())

    def save(self, step: int, weights: dict[str, torch.Tensor], state: dict | None) -> None:
        """Write the weights (and the resume state, if given) of ``step``, then index them."""
        self.dir.mkdir(parents=True, exist_ok=True)
        weights = {k: v.detach().contiguous().cpu() for k, v in weights.items()}
        entry: dict = {}
        path = self.dir / weights_name(step)
        atomic_write_with(path, lambda tmp: save_file(weights, str(tmp), {"step": str(step)}))
        entry["weights"], entry["weights_sha256"] = path.name, sha256(path)
        if state is not None:
            path = self.dir / state_name(step)
            atomic_write_with(path, lambda tmp: torch.save(state, tmp))
            entry["state"], entry["state_sha256"] = path.name, sha256(path)
        index = self.index()
        index[step] = entry
        self._write_index(index)

    def drop_states(self, keep: int) -> None:
        """Delete the resume state of all but the latest ``keep`` checkpoints (weights stay)."""
        index = self.index()
        with_state = [s for s in sorted(index) if "state" in index[s]]
        stale = with_state[: max(0, len(with_state) - keep)]
        if not stale:
            return
        for s in stale:
            entry = index[s]
            entry.pop("state_sha256")
            (self.dir / entry.pop("state")).unlink(missing_ok=True)
        self._write_index(index)

    def truncate_after(self, step: int) -> None:
        """Forget checkpoints after ``step`` (a resumed run rewrites them)."""
        index = self.index()
        later = [s for s in index if s > step]
        for s in later:
            for key in ("weights", "state"):
                if key in index[s]:
                    (self.dir / index[s][key]).unlink(missing_ok=True)
            del index[s]
        if later:
            self._write_index(index)

    def problem(self, step: int, key: str, index: dict[int, dict] | None = None) -> str | None:
        """What is wrong with the file ``key`` of checkpoint ``step`` (None if it exists and
        matches its digest, or if the checkpoint has no such file)."""
        entry = (self.index() if index is None else index).get(step, {})
        if key not in entry:
            return None
        path = self.dir / entry[key]
        if not path.is_file():
            return f"checkpoint file {path} is missing"
        if sha256(path) != entry[f"{key}_sha256"]:
            return f"checkpoint file {path} does not match its SHA-256 (truncated or corrupt)"
        return None

    def damaged_weights(self, index: dict[int, dict] | None = None) -> dict[int, str]:
        """Step -> what is wrong, for every checkpoint whose weights are missing or corrupt."""
        index = self.index() if index is None else index
        problems = {s: self.problem(s, "weights", index) for s in sorted(index)}
        return {s: p for s, p in problems.items() if p is not None}

    def _verified(self, step: int, key: str, index: dict[int, dict] | None = None) -> Path | None:
        """The file ``key`` of checkpoint ``step`` if it exists and matches its digest; else
        None, with a warning if the file is missing or corrupt."""
        index = self.index() if index is None else index
        if key not in index.get(step, {}):
            return None
        problem = self.problem(step, key, index)
        if problem is not None:
            warnings.warn(skipping(problem, step, key), stacklevel=3)
            return None
        return self.dir / index[step][key]

    def load_weights(self, step: int) -> dict[str, torch.Tensor]:
        path = self._verified(step, "weights")
        if path is None:
            raise ValueError(
                f"no intact weights for step {step} in {self.root}; intact steps: "
                f"{self.intact_steps()}"
            )
        return load_file(str(path))

    def intact_steps(self) -> list[int]:
        index = self.index()
        damaged = self.damaged_weights(index)
        return [s for s in sorted(index) if s not in damaged]

    def files_state(self) -> tuple:
        """What verifying the weights depends on: the index, and the size, modification time
        and inode of every indexed weights file (so a changed or replaced file is verified
        again)."""
        index = self.index()
        state = []
        for step, entry in sorted(index.items()):
            try:
                st = (self.dir / entry["weights"]).stat()
                stamp = (st.st_size, st.st_mtime_ns, st.st_ino)
            except FileNotFoundError:
                stamp = None
            state.append((step, entry["weights"], entry["weights_sha256"], stamp))
        return tuple(state)

    def latest_resumable(self) -> tuple[int, dict[str, torch.Tensor], dict] | None:
        """The newest checkpoint whose weights and state both verify and load, else None."""
        index = self.index()
        for step in sorted(index, reverse=True):
            w, s = self._verified(step, "weights", index), self._verified(step, "state", index)
            if w is None or s is None:
                continue
            try:
                return step, load_file(str(w)), torch.load(s, weights_only=True)
            except Exception as err:  # a file that verifies but will not load is still bad
                warnings.warn(f"cannot load checkpoint {step}: {err}; skipping it", stacklevel=2)
        return None


class _ModelConfigField:
    """The ``Run.model_cfg`` field: the model config, which may be given as its
    stored dict and is then built on first use, so that reading a run's metrics and summary
    does not import TransformerLens (seconds). It has no default."""

    def __set_name__(self, owner: type, name: str) -> None:
        self.slot = f"_{name}"

    @overload
    def __get__(self, run: None, owner: type | None = None) -> NoReturn: ...
    @overload
    def __get__(self, run: "Run", owner: type | None = None) -> "ModelConfig": ...
    def __get__(self, run: "Run | None", owner: type | None = None) -> "ModelConfig":
        if run is None:  # what makes the dataclass see no default
            raise AttributeError("model_cfg has no default")
        value = run.__dict__[self.slot]
        if isinstance(value, dict):
            value = run.__dict__[self.slot] = config_from_dict(value)
        return value

    def __set__(self, run: "Run", value: "ModelConfig | dict") -> None:
        run.__dict__[self.slot] = value


@dataclass
class Run:
    """A training run on disk. Build with :func:`load_run` (or get one back from ``train``).

    Attributes:
        path: the run folder.
        task_name, task_params: what regenerates :attr:`task`.
        model_cfg: the model config (or its stored dict, built into one on
            first use).
        train_cfg: the ``TrainConfig``.
        metrics: one dict per evaluation, in step order.
        task_fingerprint: :meth:`TaskData.fingerprint` of the data trained on (None in runs
            written before fingerprints were stored).
        read_only: whether nothing may be written into the folder (a class attribute: True for
            a folder of Hugging Face checkpoints,
            :class:`grok_circuits.runs.series.CheckpointSeries`).
    """

    read_only: ClassVar[bool] = False
    path: Path
    task_name: str
    task_params: dict
    # The type checker reads the descriptor's types (set a config or its dict, get a config); a
    # run-time type check takes either, without importing the active backend's config class.
    if TYPE_CHECKING:
        model_cfg: _ModelConfigField = _ModelConfigField()
    else:
        model_cfg: object = _ModelConfigField()
    # The checker takes the descriptor for a default; the dataclass sees none (its __get__ on
    # the class raises AttributeError), so a field without a default may follow.
    train_cfg: TrainConfig  # type: ignore[misc]
    metrics: list[dict] = field(default_factory=list)
    task_fingerprint: str | None = None
    # The last verification of the checkpoints: the files' state, the damaged steps, and the
    # steps already warned about (once per Run).
    _verified_state: tuple | None = field(default=None, init=False, repr=False, compare=False)
    _damaged: dict[int, str] = field(default_factory=dict, init=False, repr=False, compare=False)
    _warned: set[int] = field(default_factory=set, init=False, repr=False, compare=False)

    @property
    def checkpoints(self) -> CheckpointStore:
        return CheckpointStore(self.path)

    def _verify_checkpoints(self) -> tuple[list[int], dict[int, str]]:
        """(intact steps, damaged step -> problem); digests are computed again only when the
        checkpoint files changed, and each damaged step is warned about once."""
        store = self.checkpoints
        state = store.files_state()
        if state != self._verified_state:
            self._damaged = store.damaged_weights()
            self._verified_state = state
        for step, problem in self._damaged.items():
            if step not in self._warned:
                self._warned.add(step)
                warnings.warn(skipping(problem, step), stacklevel=4)
        intact = [s for s, *_ in state if s not in self._damaged]
        return intact, self._damaged

    @property
    def steps(self) -> list[int]:
        """Steps with an intact saved checkpoint, ascending (damaged ones are left out, with a
        warning)."""
        return self._verify_checkpoints()[0]

    @property
    def damaged_steps(self) -> list[int]:
        """Steps whose checkpoint is missing or does not match its digest."""
        return sorted(self._verify_checkpoints()[1])

    @property
    def last_step(self) -> int:
        return self.metrics[-1]["step"] if self.metrics else 0

    @functools.cached_property
    def task(self) -> TaskData:
        """The task data, regenerated from the stored parameters and checked against the
        fingerprint of the data the model was trained on."""
        task = make_task(self.task_name, preset=None, **self.task_params)
        if self.task_fingerprint is not None and task.fingerprint() != self.task_fingerprint:
            raise ValueError(
                f"the task regenerated from {self.path / TASK_FILE} differs from the one this run "
                "was trained on (its fingerprint does not match); this happens when the data "
                "generator or numpy's random streams changed; use the grok_circuits and numpy "
                "versions the run was made with"
            )
        return task

    def model(
        self, step: int | None = None, device: str | None = "auto", iterations: int | None = None
    ) -> "Model":
        """The model at checkpoint ``step`` (default: the last intact one), in eval mode.

        ``iterations``: for a run with a recurrent core (``TrainConfig.core``, or
        ``n_loops > 1``), how many times the model runs it (default: the count it was evaluated
        with in training); its blocks and hook names then follow
        (:func:`grok_circuits.recurrence.set_iterations`). A ValueError for a plain run."""
        steps, damaged = self._verify_checkpoints()
        if not steps:
            raise ValueError(f"run {self.path} has no intact checkpoint (damaged: {len(damaged)})")
        if step is None:
            step = steps[-1]
        if step in damaged:
            raise ValueError(
                f"{damaged[step]}, so step {step} cannot be loaded; intact steps: {steps} "
                "(run.nearest_step(step) finds the closest)"
            )
        if step not in steps:
            raise ValueError(
                f"no checkpoint at step {step} in {self.path}; checkpointed steps: {steps} "
                "(run.nearest_step(step) finds the closest)"
            )
        recurrence = recurrence_of_config(self.train_cfg, self.model_cfg.n_layers)
        if iterations is not None and recurrence is None:
            raise ValueError(
                f"run {self.path} has no recurrent core, so iterations={iterations} cannot be "
                "set; it is for runs trained with TrainConfig(core=...) or n_loops > 1"
            )
        model = build_model(self.model_cfg, device=resolve_device(device), recurrence=recurrence)
        model = load_weights(model, self.checkpoints.load_weights(step)).eval()
        return model if iterations is None else set_iterations(model, iterations)

    def nearest_step(self, step: int) -> int:
        """The intact checkpointed step closest to ``step``."""
        steps = self.steps
        if not steps:
            raise ValueError(f"run {self.path} has no intact checkpoint")
        return min(steps, key=lambda s: (abs(s - step), s))

    def metric(self, name: str) -> list[float]:
        return [row[name] for row in self.metrics]

    def first_step(self, probe: str, threshold: float) -> int | None:
        """First evaluated step where ``{probe}_acc`` >= ``threshold`` (None if never)."""
        for row in self.metrics:
            if row.get(f"{probe}_acc", -1.0) >= threshold:
                return row["step"]
        return None

    @property
    def key_probes(self) -> dict[str, str]:
        return self.task.key_probes

    @property
    def saturation_step(self) -> int | None:
        """First step where training (inferred) accuracy reached 99%: the memorizing stage."""
        return stage_steps(self.metrics, self.key_probes)["saturation"]

    @property
    def grok_step(self) -> int | None:
        """First step where ID test accuracy reached 95%: the generalizing stage."""
        return stage_steps(self.metrics, self.key_probes)["grok"]

    @property
    def grokking(self) -> dict:
        """The run's grokking measure (:func:`grokking`): ``memorization_step``,
        ``id_at_memorization``, ``grok_step`` and ``grokking_delay``."""
        return grokking(self.metrics, self.key_probes)

    @property
    def memorization_step(self) -> int | None:
        """First step where training accuracy reached 95% and held it for a second evaluation:
        where the model has memorized (see :func:`grokking`; :attr:`saturation_step`, the first
        99%, can fall where the model already generalizes)."""
        return self.grokking["memorization_step"]

    @property
    def id_baseline(self) -> float | None:
        """ID accuracy of a model that knows only which answer goes with each prompt's first
        token (:func:`first_token_baseline`): the floor to read ``id_at_memorization`` against.
        About 0.4 for comparison, whose first token, the attribute, narrows the answer to its
        three labels; near 0 for composition and modular arithmetic."""
        return first_token_baseline(self.task)

    @property
    def grokking_delay(self) -> float | None:
        """``grok_step / memorization_step``: how many times longer the run took to generalize
        than to memorize (None if it never did either; see :func:`grokking`)."""
        return self.grokking["grokking_delay"]

    def to_frame(self):
        """The metrics as a pandas DataFrame indexed by step."""
        import pandas as pd

        return pd.DataFrame(self.metrics).set_index("step")

    def summary(self) -> dict:
        """Sizes, steps and final accuracies, as printed by ``grok-circuits report``."""
        last = self.metrics[-1] if self.metrics else {}
        k = self.key_probes
        m = self._model_shape()
        # n_params counts the blocks' weights; shared blocks count once.
        n_loops, tc = self.train_cfg.n_loops, self.train_cfg
        loops = f" ({m['n_layers'] // n_loops} unique blocks x {n_loops})" if n_loops > 1 else ""
        if tc.core is not None:
            unique = tc.prelude + tc.core + tc.coda
            n_loops = m["n_layers"] / unique  # params are per block: unique blocks count once
            loops = f" (prelude {tc.prelude} + core {tc.core} x {nominal_iterations(tc)}"
            loops += f" + coda {tc.coda}{', injected' if tc.inject else ''})"
        steps, damaged = self._verify_checkpoints()
        baseline = self.id_baseline
        return {
            "task": self.task_name,
            **{f"task.{key}": v for key, v in self.task.stats().items()},
            "model": f"{m['n_layers']}L{loops} d_model={m['d_model']} "
            f"heads={m['n_heads']} params={int(m['n_params'] // n_loops):,}",
            "precision": tc.precision,
            "steps": self.last_step,
            "checkpoints": len(steps),
            "damaged_checkpoints": len(damaged),
            "train_acc": last.get(f"{k['train']}_acc"),
            "id_acc": last.get(f"{k['id']}_acc"),
            "ood_acc": last.get(f"{k['ood']}_acc") if "ood" in k else None,
            "saturation_step": self.saturation_step,
            "grok_step": self.grok_step,
            **{k: v for k, v in self.grokking.items() if k != "grok_step"},
            "id_baseline": None if baseline is None else round(baseline, 3),
            "wall_seconds": last.get("time"),
        }

    def _model_shape(self) -> dict:
        """n_layers, d_model, n_heads and n_params, from the stored dict where the config has
        not been built (building it imports TransformerLens)."""
        from grok_circuits.backend import block_params

        names = ("n_layers", "d_model", "n_heads")
        stored = self.__dict__.get("_model_cfg")
        if isinstance(stored, dict) and all(n in stored for n in names):
            return {**{n: stored[n] for n in names}, "n_params": block_params(stored)}
        cfg = self.model_cfg
        return {**{n: getattr(cfg, n) for n in names}, "n_params": block_params(cfg)}

    def __repr__(self) -> str:
        return (
            f"Run({str(self.path)!r}, task={self.task_name!r}, steps={self.last_step}, "
            f"checkpoints={len(self.steps)}, grok_step={self.grok_step})"
        )


def stage_steps(metrics: list[dict], key_probes: dict[str, str]) -> dict[str, int | None]:
    """The stages of a run's ``metrics``: ``"saturation"``, the first evaluated step where
    training accuracy reached :data:`SATURATION_THRESHOLD` (the memorizing stage), and
    ``"grok"``, the first where ID accuracy reached :data:`GROK_THRESHOLD` (the generalizing
    stage); and ``"memorization"``, :func:`memorization_step` (the memorizing model of the
    grokking measure, :func:`grokking`); None where never. :attr:`Run.saturation_step`,
    :attr:`Run.grok_step` and :attr:`Run.memorization_step` are these, and training checkpoints
    each step when it reaches it, so that ``run.model(step)`` loads any of them."""

    def first(probe: str, threshold: float) -> int | None:
        return next((r["step"] for r in metrics if r.get(f"{probe}_acc", -1.0) >= threshold), None)

    return {
        "saturation": first(key_probes["train"], SATURATION_THRESHOLD),
        "grok": first(key_probes["id"], GROK_THRESHOLD),
        "memorization": memorization_step(metrics, key_probes["train"]),
    }


def memorization_step(
    metrics: list[dict],
    train_probe: str = "train_inferred",
    threshold: float = MEMORIZATION_THRESHOLD,
    hold: int = MEMORIZATION_HOLD,
) -> int | None:
    """The first evaluated step where ``{train_probe}_acc`` >= ``threshold`` and stays so for
    ``hold`` evaluations in a row (that one and the next ``hold - 1``); evaluations the run has
    not reached yet count as held, so a run still training names its latest crossing. None if
    never. Why this rule, rather than the first 99%: see :func:`grokking`."""
    if hold < 1:
        raise ValueError(f"hold must be >= 1 evaluation, got {hold}")
    accs = [r.get(f"{train_probe}_acc", -1.0) for r in metrics]
    for i, row in enumerate(metrics):
        if all(a >= threshold for a in accs[i : i + hold]):
            return row["step"]
    return None


def first_token_baseline(task: TaskData) -> float | None:
    """ID accuracy of answering every query with the answer its first token most often has in
    the training (inferred) probe, ties to the smallest token id: what a model scores that has
    learnt only which answers go with a prompt's first token. For a comparison (first token:
    the attribute; answer: one of its three labels) that is about 0.4, so a memorizing
    comparison model is not at 0 on ID; ``docs/science.md`` §8 judges ID at memorization above
    this floor. None where the training or ID probe is empty."""
    train, test = task.splits[task.key_probes["train"]], task.splits[task.key_probes["id"]]
    if not len(train) or not len(test):
        return None
    best = {}
    for first in train.tokens[:, 0].unique().tolist():
        best[first] = train.answers[train.tokens[:, 0] == first].mode().values.item()
    guess = torch.tensor([best.get(t, -1) for t in test.tokens[:, 0].tolist()])
    return (guess == test.answers).float().mean().item()


def grokking(metrics: list[dict], key_probes: dict[str, str]) -> dict:
    """How delayed a run's generalization is: the grokking measure.

    Returns a dict of

    - ``memorization_step``: where the model has memorized its training facts, the first
      evaluation with training accuracy >= :data:`MEMORIZATION_THRESHOLD` (0.95) held for
      :data:`MEMORIZATION_HOLD` (2) evaluations in a row (:func:`memorization_step`);
    - ``id_at_memorization``: ID accuracy at that evaluation;
    - ``grok_step``: the first evaluation with ID accuracy >= :data:`GROK_THRESHOLD` (0.95);
    - ``grokking_delay``: ``grok_step / memorization_step``, how many times longer the run took
      to generalize than to memorize (below 1 when ID got there first).

    Each is None where it is undefined (never memorized, never grokked, memorized at step 0).
    A run shows grokking when ID accuracy at memorization is low and the delay is large: the
    paper's composition run at φ = 7.2 passes 99% training accuracy near step 14K with ID at
    most 9.2%, and reaches ID 100% about 50 times later.

    Why 0.95 held twice, and not the first 99% (:attr:`Run.saturation_step`): the training
    accuracy is measured on a fixed sample (up to ``eval_size``, 1,000, examples; a binomial
    standard error of about 0.003 at 0.99), and at tutorial scale it plateaus just under 0.99
    for most of the run (the shipped composition run sits at 0.988 to 0.995 from step 400 to
    2,500). So the first 99% is decided by sampling noise and by the last hard 1% of facts, and
    it can land long after the model memorized, where it already generalizes: in the tutorial
    composition runs at φ = 7.2 of ``data/phi_law_curves.csv`` (seeds 0 and 1), training
    accuracy first reached 0.99 at steps 1,200 and 1,100 with ID at 0.81 and 0.83, while it
    passed 0.95 for good at step 300 with ID at 0.14. 0.95 lies on the steep part of the rise
    (tens of points per evaluation), where the noise moves the crossing by at most one
    evaluation, and it ends the memorizing phase: the last few percent of the training facts are
    learnt alongside the generalizing circuit. Holding it for a second evaluation skips a
    transient crossing during the rise.
    """
    mem = memorization_step(metrics, key_probes["train"])
    grok = stage_steps(metrics, key_probes)["grok"]
    id_at = None
    if mem is not None:
        row = next(r for r in metrics if r["step"] == mem)
        id_at = row.get(f"{key_probes['id']}_acc")
    delay = grok / mem if grok is not None and mem else None
    return {
        "memorization_step": mem,
        "id_at_memorization": id_at,
        "grok_step": grok,
        "grokking_delay": delay,
    }


def key_steps(run: Run, n: int = 8) -> list[int]:
    """About ``n`` checkpointed steps spread over the run on a log scale, always including the
    first, the last, and the checkpoints nearest the memorizing and generalizing stages."""
    steps = run.steps
    if len(steps) <= n:
        return steps
    keep = {steps[0], steps[-1]}
    keep |= {run.nearest_step(s) for s in (run.saturation_step, run.grok_step) if s is not None}
    positive = [s for s in steps if s > 0]
    lo, hi = math.log(positive[0]), math.log(positive[-1])
    for i in range(n):
        if len(keep) >= n:
            break
        keep.add(run.nearest_step(round(math.exp(lo + (hi - lo) * i / max(n - 1, 1)))))
    return sorted(keep)


def export_run(run: Run, dest: str | os.PathLike, steps: list[int] | None = None) -> Run:
    """Copy a run with only the checkpoints at ``steps`` (default: all) and no optimizer state.

    This is how the small runs shipped in ``data/`` are made: the metrics and configs are kept
    whole, the weights only where an analysis needs them. ``dest`` must not exist yet.
    """
    dest = Path(dest)
    if dest.exists():
        raise FileExistsError(f"{dest} exists; export into a new folder")
    steps = sorted(set(run.steps if steps is None else steps))
    missing = sorted(set(steps) - set(run.steps))
    if missing:
        raise ValueError(f"steps {missing} are not checkpointed in {run.path}; have {run.steps}")
    dest.mkdir(parents=True)
    for name in (TASK_FILE, MODEL_CONFIG_FILE, TRAIN_CONFIG_FILE, METRICS_FILE):
        atomic_write_with(dest / name, functools.partial(shutil.copyfile, run.path / name))
    store = CheckpointStore(dest)
    for step in steps:
        store.save(step, run.checkpoints.load_weights(step), state=None)
    return open_run(dest)


def read_metrics(path: Path) -> list[dict]:
    """The run's evaluations; none for a run not evaluated yet. A run with checkpoints was
    evaluated, so a missing metrics.json there is damage: a ValueError naming it, rather than a
    run of 0 steps (whose resume would keep only the new rows)."""
    p = Path(path) / METRICS_FILE
    if p.is_file():
        return read_json(p)
    steps = CheckpointStore(path).steps
    if steps:
        raise ValueError(
            f"{p} is missing, though the run has {len(steps)} checkpoints (steps {steps[0]} to "
            f"{steps[-1]}): its evaluations, and the memorizing and grok steps with them, are "
            "lost; restore it from a copy of the run, or train the run again into a new folder"
        )
    return []


def write_metrics(path: Path, rows: list[dict]) -> None:
    atomic_write_json(Path(path) / METRICS_FILE, rows)


def open_run(path: str | os.PathLike) -> Run:
    """Open a run folder written by :func:`grok_circuits.train` (what :func:`load_run` calls for
    any folder that is not a series of Hugging Face checkpoints)."""
    path = Path(path)
    missing = [
        f for f in (TASK_FILE, MODEL_CONFIG_FILE, TRAIN_CONFIG_FILE) if not (path / f).is_file()
    ]
    if missing:
        raise FileNotFoundError(
            f"{path} is not a grok_circuits run: missing {missing} "
            "(create one with grok_circuits.train or `grok-circuits train`), nor a folder of "
            "Hugging Face checkpoint-<step>/ folders"
        )
    task = read_json(path / TASK_FILE)
    run = Run(
        path=path,
        task_name=task["name"],
        task_params=task["params"],
        model_cfg=read_json(path / MODEL_CONFIG_FILE),  # built on first use
        train_cfg=TrainConfig.from_dict(read_json(path / TRAIN_CONFIG_FILE)),
        metrics=read_metrics(path),
        task_fingerprint=task.get("fingerprint"),
    )
    run._verify_checkpoints()  # a damaged checkpoint is warned about on opening the run
    return run
