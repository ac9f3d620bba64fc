"""Every plot of grok_circuits; the only place that imports matplotlib.

Result objects' ``.plot()`` methods call into here, so notebooks read as a story. Names load on
first use (PEP 562), so that plotting a run's curves (``grok-circuits report``) does not import
TransformerLens, which only the attention view needs.
"""

from grok_circuits._lazy import lazy_exports

#: Every public plot and the module that defines it; to export a plot, add it here.
_EXPORTS: dict[str, str] = {
    "attention_patterns": "grok_circuits.viz.attention",
    "plot_accuracy_curves": "grok_circuits.viz.training",
    "plot_bridge_over_time": "grok_circuits.viz.analysis",
    "plot_causal_graph": "grok_circuits.viz.circuits",
    "plot_causal_trace": "grok_circuits.viz.analysis",
    "plot_circuit": "grok_circuits.viz.circuits",
    "plot_complex_reasoning": "grok_circuits.viz.training",
    "plot_component_scores": "grok_circuits.viz.circuits",
    "plot_edge_change": "grok_circuits.viz.edges",
    "plot_edge_circuit": "grok_circuits.viz.edges",
    "plot_edge_reuse": "grok_circuits.viz.edges",
    "plot_faithfulness": "grok_circuits.viz.edges",
    "plot_faithfulness_over_checkpoints": "grok_circuits.viz.edges",
    "plot_edge_roc": "grok_circuits.viz.edges",
    "plot_fourier_spectrum": "grok_circuits.viz.progress",
    "plot_grouped_accuracy": "grok_circuits.viz.analysis",
    "plot_hop_trace": "grok_circuits.viz.analysis",
    "plot_halting": "grok_circuits.viz.analysis",
    "plot_depth_extrapolation": "grok_circuits.viz.analysis",
    "plot_logit_lens": "grok_circuits.viz.analysis",
    "plot_over_checkpoints": "grok_circuits.viz.progress",
    "plot_paper_figure": "grok_circuits.viz.analysis",
    "plot_progress_measures": "grok_circuits.viz.measures",
    "plot_training_report": "grok_circuits.viz.measures",
    "plot_phi_law": "grok_circuits.viz.training",
    "plot_reasoning_trace": "grok_circuits.viz.analysis",
    "plot_reuse": "grok_circuits.viz.circuits",
    "plot_seed_curves": "grok_circuits.viz.training",
    "plot_stage_comparison": "grok_circuits.viz.analysis",
    "plot_sweep": "grok_circuits.viz.sweep",
    "save_figure": "grok_circuits.viz.training",
    "plot_mib_ablations": "grok_circuits.viz.edges",
    "plot_faithfulness_surface": "grok_circuits.viz.edges",
    "plot_das_over_checkpoints": "grok_circuits.viz.edges",
}

__all__ = list(_EXPORTS)


__getattr__, __dir__ = lazy_exports(globals(), _EXPORTS)
