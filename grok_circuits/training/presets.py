"""Training presets to go with the task presets.

Every task registers its own (``grok_circuits.register_task(..., train_presets=...)``);
``"paper"`` falls back to the paper's recipe, :data:`grok_circuits.config.PAPER`. The tutorial
presets are what we measured to grok fastest on two CPU cores; ``benchmarks/README.md`` records
what was tried and ``benchmarks/time_to_grok.py`` measures it.
"""

from grok_circuits.config import PAPER, TrainConfig
from grok_circuits.tasks import task_spec


def train_config(task: str, preset: str = "tutorial") -> TrainConfig:
    """The training preset ``preset`` of a registered task: one it registered (``"tutorial"``,
    and for composition ``"fast"``), or ``"paper"``, which every task has."""
    spec = task_spec(task)
    if preset in spec.train_presets:
        return spec.train_presets[preset]
    if preset == "paper":
        return PAPER
    have = sorted({*spec.train_presets, "paper"})
    raise ValueError(f"no training preset {preset!r} for task {task!r}; choose one of {have}")


__all__ = ["PAPER", "train_config"]
