"""Mirror a run's metrics to the experiment trackers a lab already reads: TensorBoard and
Weights & Biases.

``TrainConfig(log_to=("tensorboard", "wandb"))`` sends every row the training loop appends to
``metrics.json`` (the step, the learning rate, loss and accuracy per probe, the weight norm and
the progress measures) to each tracker named, as SAELens' and TransformerLens' trainers do:

- ``"tensorboard"``: ``torch.utils.tensorboard.SummaryWriter`` writing event files to
  ``RUN/tensorboard`` (``tensorboard --logdir RUN``); one scalar per column, at its step.
- ``"wandb"``: ``wandb.init(dir=RUN, ...)`` and ``run.log(row, step=row["step"])``. The project
  is ``$WANDB_PROJECT`` (default ``grok-circuits``), the run's name the run folder's, its config
  the task and the :class:`~grok_circuits.TrainConfig`. The W&B run id is kept in
  ``RUN/wandb/run_id``, so a resumed run continues the same W&B run. ``WANDB_MODE=offline``
  writes ``RUN/wandb/offline-run-*`` for ``wandb sync`` later.

Both are optional extras (``pip install -e ".[track]"``) and off by default. The run folder stays
the record: trackers only receive copies of its rows, they never change the weights or the
metrics, and a resumed run may turn them on or off (``log_to`` is in ``RESUME_CHANGEABLE``). A
resumed run sends the rows it computes again after its checkpoint; exact resume makes them equal
to the ones sent before.
"""

import importlib.util
import os
import secrets
import string
from collections.abc import Sequence
from pathlib import Path

#: The trackers by name, and the package each needs.
TRACKERS = {"tensorboard": "tensorboard", "wandb": "wandb"}


def check_trackers(names: Sequence[str]) -> None:
    """Raise a ValueError naming the extra to install if a tracker's package is missing."""
    for name in names:
        if name not in TRACKERS:
            raise ValueError(f"unknown tracker {name!r} in log_to; choose from {sorted(TRACKERS)}")
        if importlib.util.find_spec(TRACKERS[name]) is None:
            raise ValueError(
                f"log_to={name!r} needs the {TRACKERS[name]} package: "
                'pip install -e ".[track]" (or pip install ' + TRACKERS[name] + ")"
            )


class MetricsMirror:
    """Sends metrics rows to the trackers in ``names``; ``log(row)`` per row, ``close()`` at the
    end (or use it as a context manager). With no names it does nothing."""

    def __init__(self, names: Sequence[str], run_dir: str | os.PathLike, config: dict):
        check_trackers(names)
        self.run_dir = Path(run_dir)
        self._tb = self._wandb = None
        if "tensorboard" in names:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(log_dir=str(self.run_dir / "tensorboard"))
        if "wandb" in names:
            self._wandb = _start_wandb(self.run_dir, config)

    def log(self, row: dict) -> None:
        """Send one metrics row (it must have a ``step``); non-numeric values are left out."""
        step = int(row["step"])
        values = {
            k: float(v)
            for k, v in row.items()
            if k != "step" and isinstance(v, (int, float)) and not isinstance(v, bool)
        }
        if self._tb is not None:
            for key, value in values.items():
                self._tb.add_scalar(key, value, step)
            self._tb.flush()  # a killed run keeps every row it logged
        if self._wandb is not None:
            self._wandb.log(values, step=step)

    def close(self) -> None:
        if self._tb is not None:
            self._tb.close()
            self._tb = None
        if self._wandb is not None:
            self._wandb.finish()
            self._wandb = None

    def __enter__(self) -> "MetricsMirror":
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def _start_wandb(run_dir: Path, config: dict):
    import wandb

    folder = run_dir / "wandb"
    folder.mkdir(parents=True, exist_ok=True)
    id_file = folder / "run_id"
    if id_file.is_file():
        run_id = id_file.read_text().strip()
    else:
        alphabet = string.ascii_lowercase + string.digits  # W&B's own id alphabet
        run_id = "".join(secrets.choice(alphabet) for _ in range(8))
        id_file.write_text(run_id)
    return wandb.init(
        project=os.environ.get("WANDB_PROJECT", "grok-circuits"),
        name=run_dir.resolve().name,
        dir=str(run_dir),
        id=run_id,
        resume="allow",
        config=config,
        settings=wandb.Settings(console="off", silent=True, x_disable_stats=True),
    )


__all__ = ["MetricsMirror", "TRACKERS", "check_trackers"]
