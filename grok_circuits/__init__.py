"""grok_circuits: mechanistic interpretability of grokked implicit reasoners, on TransformerLens.

Reproduces and dissects "Grokked Transformers are Implicit Reasoners" (Wang et al., 2024):
the composition and comparison tasks (:func:`make_task`), training a ``HookedTransformer`` with
checkpoints over time (:func:`train`, :func:`load_run`), and hook-based analysis.
"""

from grok_circuits.model import build_model, model_config
from grok_circuits.presets import train_config
from grok_circuits.runs import Run, load_run
from grok_circuits.tasks import Split, TaskData, Vocab, make_task
from grok_circuits.train import TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "Run",
    "Split",
    "TaskData",
    "TrainConfig",
    "Vocab",
    "build_model",
    "load_run",
    "make_task",
    "model_config",
    "train",
    "train_config",
]
