"""grok_circuits: mechanistic interpretability of grokked implicit reasoners, on TransformerLens.

Reproduces and dissects "Grokked Transformers are Implicit Reasoners" (Wang et al., 2024):
the composition, comparison and modular-arithmetic tasks, or any task of your own
(:func:`make_task`, :func:`register_task`), training a ``HookedTransformer`` with checkpoints
over time (:func:`train`, :func:`load_run`), the paper's released datasets and any series of
Hugging Face GPT-2 checkpoints (:func:`load_paper_data`, ``load_run(path, data=...)``), and
hook-based analysis of any model on any data
(:class:`PromptPairs`; :func:`logit_lens`, :func:`causal_trace`, :func:`trace_reasoning`,
:func:`find_circuit`, :func:`compare_stages`, :func:`circuit_reuse`, :func:`over_checkpoints`,
:func:`analyze`).
"""

from grok_circuits._lazy import lazy_exports

__version__ = "0.1.0"

#: Every public name and the module that defines it. Names are imported on first use (PEP 562),
#: so that ``import grok_circuits`` and the commands that need no model (``grok-circuits --help``,
#: ``report``) do not pay for importing TransformerLens, which takes seconds. To export a name,
#: add it here.
_EXPORTS: dict[str, str] = {
    "Analysis": "grok_circuits.analysis",
    "BridgeTrace": "grok_circuits.analysis",
    "BridgeTraceOverTime": "grok_circuits.analysis",
    "CausalTrace": "grok_circuits.analysis",
    "Circuit": "grok_circuits.analysis",
    "Component": "grok_circuits.analysis",
    "Edge": "grok_circuits.analysis",
    "EdgeChange": "grok_circuits.analysis",
    "EdgeCircuit": "grok_circuits.analysis",
    "EdgeReuseReport": "grok_circuits.analysis",
    "EdgeScores": "grok_circuits.analysis",
    "Faithfulness": "grok_circuits.analysis",
    "FourierSpectrum": "grok_circuits.analysis",
    "GroupedAccuracy": "grok_circuits.analysis",
    "LogitLensResult": "grok_circuits.analysis",
    "OverCheckpoints": "grok_circuits.analysis",
    "ReasoningTrace": "grok_circuits.analysis",
    "ReuseReport": "grok_circuits.analysis",
    "StageComparison": "grok_circuits.analysis",
    "accuracy": "grok_circuits.analysis",
    "accuracy_by": "grok_circuits.analysis",
    "accuracy_under_ablation": "grok_circuits.analysis",
    "analyze": "grok_circuits.analysis",
    "causal_trace": "grok_circuits.analysis",
    "circuit_reuse": "grok_circuits.analysis",
    "compare_edges": "grok_circuits.analysis",
    "compare_stages": "grok_circuits.analysis",
    "edge_attribution": "grok_circuits.analysis",
    "faithfulness": "grok_circuits.analysis",
    "find_circuit": "grok_circuits.analysis",
    "fourier_spectrum": "grok_circuits.analysis",
    "logit_difference": "grok_circuits.analysis",
    "logit_lens": "grok_circuits.analysis",
    "over_checkpoints": "grok_circuits.analysis",
    "prediction_changed": "grok_circuits.analysis",
    "trace_bridge": "grok_circuits.analysis",
    "trace_pairs": "grok_circuits.analysis",
    "trace_reasoning": "grok_circuits.analysis",
    "TrainConfig": "grok_circuits.config",
    "build_model": "grok_circuits.model",
    "count_loops": "grok_circuits.model",
    "load_weights": "grok_circuits.model",
    "model_config": "grok_circuits.model",
    "model_weights": "grok_circuits.model",
    "share_blocks": "grok_circuits.model",
    "train_config": "grok_circuits.training.presets",
    "GradHook": "grok_circuits.training.plugins",
    "register_grad_hook": "grok_circuits.training.plugins",
    "register_loss": "grok_circuits.training.plugins",
    "stablemax_cross_entropy": "grok_circuits.training.plugins",
    "ProgressMeasures": "grok_circuits.training.progress_measures",
    "progress_measures": "grok_circuits.training.progress_measures",
    "Run": "grok_circuits.runs.run",
    "load_run": "grok_circuits.runs.load",
    "CheckpointSeries": "grok_circuits.runs.series",
    "load_paper_data": "grok_circuits.tasks.paper",
    "ComplexParams": "grok_circuits.tasks",
    "MixedParams": "grok_circuits.tasks",
    "ModularParams": "grok_circuits.tasks",
    "PromptPairs": "grok_circuits.tasks",
    "Split": "grok_circuits.tasks",
    "TaskData": "grok_circuits.tasks",
    "TaskSpec": "grok_circuits.tasks",
    "Vocab": "grok_circuits.tasks",
    "complex_baselines": "grok_circuits.tasks",
    "make_pairs": "grok_circuits.tasks",
    "make_task": "grok_circuits.tasks",
    "mixed_subtask": "grok_circuits.tasks",
    "op_pairs": "grok_circuits.tasks",
    "register_task": "grok_circuits.tasks",
    "subtasks": "grok_circuits.tasks",
    "task_names": "grok_circuits.tasks",
    "task_spec": "grok_circuits.tasks",
    "train": "grok_circuits.training.loop",
    "Sweep": "grok_circuits.sweeps",
    "SweepSpec": "grok_circuits.sweeps",
    "load_sweep": "grok_circuits.sweeps",
    "sweep": "grok_circuits.sweeps",
    "MetricsMirror": "grok_circuits.training.tracking",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
