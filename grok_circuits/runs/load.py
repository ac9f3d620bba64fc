"""Opening any run folder: one that :func:`grok_circuits.train` wrote, or a folder of Hugging Face
``checkpoint-<step>/`` folders."""

import os
from pathlib import Path

from grok_circuits.runs.run import Run, open_run
from grok_circuits.runs.series import is_checkpoint_series, load_series


def load_run(path: str | os.PathLike, data=None) -> Run:
    """Open a run folder written by :func:`grok_circuits.train`, or a folder of Hugging Face
    ``checkpoint-<step>/`` folders (the paper's released runs; read-only) together with the
    ``data`` it was trained on (see :func:`grok_circuits.runs.series.load_series`)."""
    path = Path(path)
    if is_checkpoint_series(path):
        return load_series(path, data)
    if data is not None:
        raise ValueError(
            f"data= is for a folder of Hugging Face checkpoints, and {path} holds no "
            "checkpoint-<step>/ folder; a grok_circuits run regenerates its own task"
        )
    return open_run(path)


__all__ = ["load_run"]
