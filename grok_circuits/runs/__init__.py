"""Run folders: those :func:`grok_circuits.train` writes (:mod:`.run`) and folders of Hugging
Face checkpoints (:mod:`.series`)."""

from grok_circuits.runs.load import load_run
from grok_circuits.runs.run import Run
from grok_circuits.runs.series import CheckpointSeries

__all__ = ["CheckpointSeries", "Run", "load_run"]
