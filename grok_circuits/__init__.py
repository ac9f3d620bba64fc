"""grok_circuits: mechanistic interpretability of grokked implicit reasoners, on TransformerLens.

Reproduces and dissects "Grokked Transformers are Implicit Reasoners" (Wang et al., 2024):
the composition, comparison and modular-arithmetic tasks, or any task of your own
(:func:`make_task`, :func:`register_task`), training a TransformerLens model with checkpoints
over time (:func:`train`, :func:`load_run`), the paper's released datasets and any series of
Hugging Face GPT-2 checkpoints (:func:`load_paper_data`, ``load_run(path, data=...)``), and
hook-based analysis of any model on any data (:class:`PromptPairs`; :func:`logit_lens`,
:func:`causal_trace`, :func:`trace_bridge`, :func:`find_circuit`, :func:`edge_attribution`,
:func:`compare_stages`, :func:`circuit_reuse`, :func:`over_checkpoints`, :func:`analyze`).

The top level holds the names a user needs; everything else is importable from its module
(``python -m grok_circuits._layout`` prints the package's layout): result classes and the
circuit-method registries from :mod:`grok_circuits.analysis`, the task parameter classes from
:mod:`grok_circuits.tasks`, model utilities from :mod:`grok_circuits.model`.
"""

from grok_circuits._lazy import lazy_exports

__version__ = "0.1.0"

#: Every public name and the module that defines it. Names are imported on first use (PEP 562),
#: so that ``import grok_circuits`` and the commands that need no model (``grok-circuits --help``,
#: ``report``) do not pay for importing TransformerLens, which takes seconds. To export a name,
#: add it here.
_EXPORTS: dict[str, str] = {
    # tasks: generate one, register your own, read the paper's released data
    "make_task": "grok_circuits.tasks",
    "register_task": "grok_circuits.tasks",
    "TaskData": "grok_circuits.tasks",
    "Split": "grok_circuits.tasks",
    "Vocab": "grok_circuits.tasks",
    "PromptPairs": "grok_circuits.tasks",
    "make_pairs": "grok_circuits.tasks",
    "load_paper_data": "grok_circuits.tasks.paper",
    # models
    "build_model": "grok_circuits.model",
    "model_config": "grok_circuits.model",
    "Recurrence": "grok_circuits.recurrence",
    "set_iterations": "grok_circuits.recurrence",
    # training and its extension points
    "train": "grok_circuits.training.loop",
    "TrainConfig": "grok_circuits.config",
    "train_config": "grok_circuits.training.presets",
    "register_loss": "grok_circuits.training.plugins",
    "register_grad_hook": "grok_circuits.training.plugins",
    "register_measure": "grok_circuits.training.progress_measures",
    "sweep": "grok_circuits.sweeps",
    # runs: ours, or a folder of Hugging Face checkpoints
    "load_run": "grok_circuits.runs.load",
    # analysis, on any model and any data
    "logit_lens": "grok_circuits.analysis",
    "causal_trace": "grok_circuits.analysis",
    "trace_reasoning": "grok_circuits.analysis",
    "trace_bridge": "grok_circuits.analysis",
    "trace_bridge_over_time": "grok_circuits.analysis",
    "trace_hops": "grok_circuits.analysis",
    "adaptive_halting": "grok_circuits.analysis",
    "compare_stages": "grok_circuits.analysis",
    "Component": "grok_circuits.analysis",
    "find_circuit": "grok_circuits.analysis",
    "circuit_reuse": "grok_circuits.analysis",
    "edge_attribution": "grok_circuits.analysis",
    "compare_edges": "grok_circuits.analysis",
    "faithfulness": "grok_circuits.analysis",
    "edge_reuse": "grok_circuits.analysis",
    "accuracy": "grok_circuits.analysis",
    "accuracy_by": "grok_circuits.analysis",
    "fourier_spectrum": "grok_circuits.analysis",
    "over_checkpoints": "grok_circuits.analysis",
    "analyze": "grok_circuits.analysis",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
