"""grok_circuits: mechanistic interpretability of grokked implicit reasoners, on TransformerLens.

Reproduces and dissects "Grokked Transformers are Implicit Reasoners" (Wang et al., 2024):
the composition and comparison tasks (:func:`make_task`), training a ``HookedTransformer`` with
checkpoints over time (:func:`train`, :func:`load_run`), and hook-based analysis
(:func:`logit_lens`, :func:`causal_trace`, :func:`trace_bridge`, :func:`find_circuit`,
:func:`compare_stages`, :func:`circuit_reuse`).
"""

from grok_circuits.analysis import (
    BridgeTrace,
    BridgeTraceOverTime,
    CausalTrace,
    Circuit,
    Component,
    Counterfactuals,
    GroupedAccuracy,
    LogitLensResult,
    ReasoningTrace,
    ReuseReport,
    StageComparison,
    accuracy_by,
    accuracy_under_ablation,
    causal_trace,
    circuit_reuse,
    compare_stages,
    find_circuit,
    logit_difference,
    logit_lens,
    make_counterfactuals,
    prediction_changed,
    trace_bridge,
    trace_counterfactuals,
    trace_reasoning,
    value_gap,
)
from grok_circuits.model import build_model, model_config
from grok_circuits.presets import train_config
from grok_circuits.runs import Run, load_run
from grok_circuits.tasks import MixedParams, Split, TaskData, Vocab, make_task, mixed_subtask
from grok_circuits.train import TrainConfig, train

__version__ = "0.1.0"

__all__ = [
    "BridgeTrace",
    "BridgeTraceOverTime",
    "CausalTrace",
    "Circuit",
    "Component",
    "Counterfactuals",
    "GroupedAccuracy",
    "LogitLensResult",
    "MixedParams",
    "ReasoningTrace",
    "ReuseReport",
    "StageComparison",
    "accuracy_by",
    "accuracy_under_ablation",
    "causal_trace",
    "circuit_reuse",
    "compare_stages",
    "find_circuit",
    "logit_difference",
    "logit_lens",
    "make_counterfactuals",
    "mixed_subtask",
    "prediction_changed",
    "trace_bridge",
    "trace_counterfactuals",
    "trace_reasoning",
    "value_gap",
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
