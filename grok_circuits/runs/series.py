"""A folder of Hugging Face checkpoints as a run: the paper's released series, or any other.

The paper's authors released step-indexed checkpoints of their runs, one folder per run named
``<dataset>_<weight_decay>_<n_layers>/`` holding ``checkpoint-<step>/`` folders (what Hugging
Face's ``Trainer`` and the authors' training script write: ``checkpoint-<step>`` or
``checkpoint-<step>-epoch-<n>``). :func:`load_series` (and :func:`grok_circuits.load_run` with
``data=``) opens such a folder, read-only, as a :class:`CheckpointSeries`: a
:class:`~grok_circuits.runs.run.Run` whose ``steps`` are the checkpoints' steps and whose
``model(step)`` is the installed TransformerLens' model built from that folder alone
(:func:`grok_circuits.hf.load_hf_model`), so every analysis that takes a run
(``trace_bridge``, ``compare_stages``, ``over_checkpoints``, ``analyze``, the CLI) takes it.

A series comes with no metrics, so they are measured: :meth:`CheckpointSeries.evaluate` loads
one checkpoint at a time (memory stays at about one model) and computes each probe's accuracy as
the authors' ``eval_qa.py`` does, greedy decoding cut at the first ``</a>`` and exact match
(:func:`exact_match`), on a fixed sample of each probe. ``run.metrics``, ``saturation_step``,
``grok_step``, ``to_frame()`` and ``summary()`` evaluate on first use.

At paper scale that is seconds per checkpoint, so each evaluated row is kept in a cache outside
the folder (:func:`cache_dir`: ``$GROK_CIRCUITS_CACHE``, else ``$XDG_CACHE_HOME/grok_circuits``
or ``~/.cache/grok_circuits``), keyed by the checkpoint's weights file (path, size, modification
time), the data's fingerprint and the sample: ``report`` then ``analyze`` on one series evaluate
it once. ``load_series(..., cache=False)`` turns it off; a cache file that cannot be read is
ignored (and rewritten).

Nothing is ever written into the folder. A checkpoint whose weights file is truncated or corrupt
is left out of ``steps`` with one warning.
"""

import hashlib
import json
import os
import re
import warnings
from pathlib import Path

import torch
from jaxtyping import Bool
from torch import Tensor
from tqdm.auto import tqdm

from grok_circuits.config import TrainConfig
from grok_circuits.hf import (
    load_hf_model,
    read_config,
    token_rows,
    weights_file,
    weights_problem,
)
from grok_circuits.io import atomic_write_json
from grok_circuits.model import resolve_device
from grok_circuits.recurrence import set_iterations
from grok_circuits.runs.run import Run
from grok_circuits.tasks import Split, TaskData, load_task
from grok_circuits.tasks.paper import ANSWER_START
from grok_circuits.tasks.paper import END as END_TOKEN

_CHECKPOINT = re.compile(r"checkpoint-(\d+)(?:-.*)?")
#: Examples of each probe evaluated per checkpoint by default (a fixed sample).
EVAL_SIZE = 1000


def cache_dir() -> Path:
    """Where evaluated metrics of checkpoint series are kept (see the module docstring)."""
    if os.environ.get("GROK_CIRCUITS_CACHE"):
        return Path(os.environ["GROK_CIRCUITS_CACHE"])
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "grok_circuits"


def checkpoint_folders(path: str | Path) -> dict[int, Path]:
    """Step -> folder of every ``checkpoint-<step>[-...]/`` folder with a ``config.json`` in
    ``path`` (the first by name where two share a step)."""
    out: dict[int, Path] = {}
    root = Path(path)
    if not root.is_dir():
        return out
    for child in sorted(root.iterdir()):
        m = _CHECKPOINT.fullmatch(child.name)
        if m and child.is_dir() and (child / "config.json").is_file():
            out.setdefault(int(m[1]), child)
    return dict(sorted(out.items()))


def is_checkpoint_series(path: str | Path) -> bool:
    """Whether ``path`` holds ``checkpoint-<step>/`` Hugging Face folders."""
    return bool(checkpoint_folders(path))


@torch.no_grad()
def exact_match(model, split: Split, vocab, batch_size: int = 1024) -> Bool[Tensor, " batch"]:
    """Which examples the model gets right as the authors' ``eval_qa.py`` counts them: greedy
    decoding from the prompt produces the answer and then ``</a>`` (and, where the data puts
    ``<a>`` before the answer, ``<a>`` first).

    Greedy decoding agrees with teacher forcing as long as every token so far was right, so one
    forward pass over the prompt with the answer appended decides it. (``eval_qa.py`` also
    accepts a generation that puts other tokens before ``<a>``; a model trained on the data does
    not, and it is not counted here.) The argmax is over the model's vocabulary, the task's
    tokens (:mod:`grok_circuits.hf`)."""
    end = vocab.token_id(END_TOKEN)
    start = vocab.token_id(ANSWER_START) if ANSWER_START in vocab.tokens else -1
    device = next(model.parameters()).device
    out = []
    for i in range(0, len(split), batch_size):
        s = split.select(slice(i, i + batch_size))
        n = len(s)
        tokens = torch.cat([s.tokens, torch.zeros((n, 1), dtype=torch.long)], dim=1)
        rows = torch.arange(n)
        tokens[rows, s.answer_pos + 1] = s.answers
        pred = model(tokens.to(device), return_type="logits").argmax(-1).cpu()
        ok = (pred[rows, s.answer_pos] == s.answers) & (pred[rows, s.answer_pos + 1] == end)
        lead = s.tokens[rows, s.answer_pos] == start
        ok &= ~lead | (pred[rows, (s.answer_pos - 1).clamp(min=0)] == start)
        out.append(ok)
    return torch.cat(out) if out else torch.zeros(0, dtype=torch.bool)


def model_tokens(task: TaskData) -> list[str | None]:
    """The vocabulary a checkpoint is loaded with: the task's tokens as the released files spell
    them, padding as None (see :func:`grok_circuits.hf.load_hf_model`)."""
    from grok_circuits.tasks.paper import paper_token

    pad = task.vocab.tokens[task.vocab.pad_id]
    return [None if t == pad else paper_token(t) for t in task.vocab.tokens]


class CheckpointSeries(Run):
    """A read-only folder of ``checkpoint-<step>/`` Hugging Face GPT-2 folders, with the data
    it was trained on (see the module docstring). Build with :func:`load_series`."""

    read_only = True  # the release's folders are never written to

    def __init__(
        self,
        path: Path,
        data: TaskData,
        folders: dict[int, Path],
        eval_size: int,
        cache: bool = True,
    ):
        first = next(iter(folders.values()))
        shape = read_config(first)
        super().__init__(
            path=Path(path),
            task_name=data.name,
            task_params=data.params.to_dict(),
            model_cfg=shape.model_config(len(data.vocab)),
            train_cfg=TrainConfig(n_loops=shape.n_loops),
            metrics=[],
            task_fingerprint=None,
        )
        self._data, self._folders, self.eval_size = data, folders, eval_size
        self._evaluated: list[dict] | None = None
        self._problems: dict[int, str] = {}
        self._tokens = model_tokens(data)
        self._cache = cache

    # The task is the data given, never regenerated.
    @property
    def task(self) -> TaskData:
        return self._data

    @property
    def metrics(self) -> list[dict]:
        if self._evaluated is None:
            self._evaluated = self.evaluate()
        return self._evaluated

    @metrics.setter
    def metrics(self, rows: list[dict]) -> None:
        self._evaluated = rows or None

    def _verify_checkpoints(self) -> tuple[list[int], dict[int, str]]:
        for step, folder in self._folders.items():
            if step in self._problems or step in self._warned:
                continue
            problem = weights_problem(folder)
            self._warned.add(step)
            if problem is not None:
                self._problems[step] = problem
                warnings.warn(f"{problem}; skipping step {step}", stacklevel=4)
        intact = [s for s in self._folders if s not in self._problems]
        return intact, dict(self._problems)

    @property
    def last_step(self) -> int:
        return max(self._folders)

    def folder(self, step: int) -> Path:
        """The ``checkpoint-<step>`` folder of ``step``."""
        if step not in self._folders:
            raise ValueError(
                f"no checkpoint at step {step} in {self.path}; checkpointed steps: "
                f"{list(self._folders)} (run.nearest_step(step) finds the closest)"
            )
        return self._folders[step]

    def model(
        self, step: int | None = None, device: str | None = "auto", iterations: int | None = None
    ):
        """The TransformerLens model of checkpoint ``step`` (default: the last intact one), in
        eval mode, speaking the data's vocabulary; ``iterations`` runs a model with shared
        blocks (``add_recurrence``) that many passes
        (:func:`grok_circuits.recurrence.set_iterations`)."""
        steps, damaged = self._verify_checkpoints()
        if not steps:
            raise ValueError(f"{self.path} has no intact checkpoint (damaged: {len(damaged)})")
        step = steps[-1] if step is None else step
        if step in damaged:
            raise ValueError(f"{damaged[step]}, so step {step} cannot be loaded")
        model = load_hf_model(self.folder(step), self._tokens, device=resolve_device(device))
        return model if iterations is None else set_iterations(model, iterations)

    def evaluate(
        self,
        eval_size: int | None = None,
        steps: list[int] | None = None,
        seed: int = 0,
        progress: bool = True,
    ) -> list[dict]:
        """Accuracy of every probe at every checkpoint (one row per step, ``{probe}_acc``), the
        authors' exact match (:func:`exact_match`) on at most ``eval_size`` examples of each
        probe (default :attr:`eval_size`), drawn once by ``seed``. Loads one model at a time."""
        size = eval_size or self.eval_size
        probes = self._data.probes(size, seed=seed)
        chosen = self.steps if steps is None else sorted(steps)
        cached = self._read_cache()
        rows = []
        bar = tqdm(chosen, desc="evaluating checkpoints", disable=not progress, leave=False)
        for step in bar:
            key = self._row_key(step, size, seed)
            row = cached.get(key)
            if row is None:
                model = self.model(step, device="cpu")
                row = {"step": step}
                for name, split in probes.items():
                    hits = exact_match(model, split, self._data.vocab)
                    row[f"{name}_acc"] = float(hits.float().mean()) if len(hits) else float("nan")
                cached[key] = row
                del model
            rows.append(row)
        self._write_cache(cached)
        if steps is None:
            self._evaluated = rows
        return rows

    # ------------------------------------------------------------------ the metrics cache
    def _cache_file(self) -> Path:
        name = hashlib.sha256(str(self.path.resolve()).encode()).hexdigest()[:24]
        return cache_dir() / "metrics" / f"{name}.json"

    def _row_key(self, step: int, size: int | None, seed: int) -> str:
        st = weights_file(self.folder(step)).stat()
        if not hasattr(self, "_fingerprint"):
            self._fingerprint = self._data.fingerprint()
        parts = [str(self.folder(step).resolve()), st.st_size, st.st_mtime_ns]
        parts += [self._fingerprint, size, seed, sorted(self._data.probe_names)]
        return hashlib.sha256(json.dumps(parts).encode()).hexdigest()

    def _read_cache(self) -> dict:
        if not self._cache or not self._cache_file().is_file():
            return {}
        try:
            data = json.loads(self._cache_file().read_text())
            return data if isinstance(data, dict) else {}
        except (OSError, json.JSONDecodeError):
            return {}  # a cache: rebuilt

    def _write_cache(self, rows: dict) -> None:
        if not self._cache:
            return
        try:
            self._cache_file().parent.mkdir(parents=True, exist_ok=True)
            atomic_write_json(self._cache_file(), rows)
        except OSError as err:  # a cache that cannot be written costs time, not results
            warnings.warn(f"cannot keep evaluated metrics in {cache_dir()}: {err}", stacklevel=3)

    def summary(self) -> dict:
        out = super().summary()
        out["wall_seconds"] = None
        out["source"] = "Hugging Face checkpoints"
        return out

    def __repr__(self) -> str:
        return (
            f"CheckpointSeries({str(self.path)!r}, task={self.task_name!r}, "
            f"checkpoints={len(self._folders)}, steps {min(self._folders)}..{self.last_step})"
        )


def _data(data) -> TaskData:
    from grok_circuits.tasks.paper import load_paper_data

    if isinstance(data, TaskData):
        return data
    if data is None:
        raise ValueError(
            "a folder of Hugging Face checkpoints carries no data: pass the dataset it was "
            "trained on, load_run(path, data='data/<dataset>') (a released dataset folder, or "
            "a TaskData)"
        )
    folder = Path(data)
    if (folder / "manifest.json").is_file():
        return load_task(folder)
    return load_paper_data(folder)


def load_series(
    path: str | Path, data, eval_size: int = EVAL_SIZE, cache: bool = True
) -> CheckpointSeries:
    """Open a folder of ``checkpoint-<step>/`` Hugging Face GPT-2 folders (read-only).

    Args:
        path: the run folder (the authors' ``<dataset>_<weight_decay>_<n_layers>/``).
        data: what it was trained on: a released dataset folder
            (:func:`~grok_circuits.load_paper_data`), a saved task folder, or a TaskData.
        eval_size: examples of each probe its metrics are measured on.
        cache: keep evaluated metrics outside the folder (see the module docstring).
    """
    folders = checkpoint_folders(path)
    if not folders:
        raise ValueError(
            f"{path} holds no checkpoint-<step>/ folder with a config.json: not a series of "
            "Hugging Face checkpoints"
        )
    task = _data(data)
    series = CheckpointSeries(Path(path), task, folders, eval_size, cache)
    series._verify_checkpoints()
    intact = series.steps
    if intact:  # the data must fit the checkpoint's tokenizer: one line now, not at first use
        token_rows(folders[intact[0]], series._tokens)
    return series


__all__ = [
    "CheckpointSeries",
    "cache_dir",
    "checkpoint_folders",
    "exact_match",
    "is_checkpoint_series",
    "load_series",
    "model_tokens",
]
