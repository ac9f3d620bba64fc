"""Every plot of grok_circuits; the only place that imports matplotlib.

Result objects' ``.plot()`` methods call into here, so notebooks read as a story.
"""

from grok_circuits.viz.analysis import (
    plot_bridge_over_time,
    plot_causal_trace,
    plot_grouped_accuracy,
    plot_logit_lens,
    plot_reasoning_trace,
    plot_stage_comparison,
)
from grok_circuits.viz.attention import attention_patterns
from grok_circuits.viz.circuits import (
    plot_causal_graph,
    plot_circuit,
    plot_component_scores,
    plot_reuse,
)
from grok_circuits.viz.progress import plot_fourier_spectrum, plot_over_checkpoints
from grok_circuits.viz.training import plot_accuracy_curves, save_figure

__all__ = [
    "attention_patterns",
    "plot_accuracy_curves",
    "plot_bridge_over_time",
    "plot_causal_graph",
    "plot_causal_trace",
    "plot_circuit",
    "plot_component_scores",
    "plot_grouped_accuracy",
    "plot_fourier_spectrum",
    "plot_logit_lens",
    "plot_over_checkpoints",
    "plot_reasoning_trace",
    "plot_reuse",
    "plot_stage_comparison",
    "save_figure",
]
