"""Hook-based analyses, one call each, on any model and any data (``HookedTransformer`` on
TransformerLens 3.x, ``TransformerBridge`` on 4.x).

Every analysis takes a model and :class:`~grok_circuits.PromptPairs` (clean and corrupt token
tensors; build them from tensors, or let a registered task build them), and never asks which task
it is looking at: logit lens, causal tracing, interchange interventions (distributed alignment
search), reasoning traces (the bridge of a two-hop query), circuits of components, memorizing
vs generalizing, circuit reuse, accuracy by group, the embedding's Fourier spectrum, and any
of these over a run's checkpoints.

Data flows one way: tasks -> train -> runs -> analysis -> viz. Every result is a small frozen
dataclass that prints as a short table and has a ``.plot()``.
"""

from grok_circuits.analysis._inputs import as_pairs, check_fits
from grok_circuits.analysis.accuracy import GroupedAccuracy, accuracy, accuracy_by
from grok_circuits.analysis.circuits.find import (
    DEFAULT_THRESHOLD,
    Circuit,
    CircuitMethod,
    find_circuit,
    register_circuit_method,
    select_components,
)
from grok_circuits.analysis.circuits.reuse import ReuseReport, circuit_reuse
from grok_circuits.analysis.components import Component, all_components
from grok_circuits.analysis.edges.attribution import (
    EDGE_METHODS,
    edge_attribution,
    register_edge_method,
)
from grok_circuits.analysis.edges.change import EdgeChange, compare_edges
from grok_circuits.analysis.edges.faithfulness import EDGE_ABLATIONS, Faithfulness, faithfulness
from grok_circuits.analysis.edges.graph import Edge, EdgeGraph
from grok_circuits.analysis.edges.mib import (
    MIB_FRACTIONS,
    EdgeROC,
    edge_auroc,
    read_mib_importances,
    write_mib_importances,
)
from grok_circuits.analysis.edges.over_checkpoints import (
    FaithfulnessOverCheckpoints,
    faithfulness_over_checkpoints,
)
from grok_circuits.analysis.edges.reuse import EdgeReuseReport, edge_reuse
from grok_circuits.analysis.edges.scores import EdgeCircuit, EdgeScores
from grok_circuits.analysis.lens.fourier import FourierSpectrum, fourier_spectrum
from grok_circuits.analysis.lens.halting import Halting, adaptive_halting
from grok_circuits.analysis.lens.hops import HopTrace, trace_hops
from grok_circuits.analysis.lens.logit_lens import LogitLensResult, logit_lens
from grok_circuits.analysis.metrics import (
    PAIR_METRICS,
    PairMetric,
    logit_difference,
    prediction_changed,
    top1_predictions,
)
from grok_circuits.analysis.over_checkpoints import OverCheckpoints, over_checkpoints
from grok_circuits.analysis.paper.analyze import Analysis, analyze
from grok_circuits.analysis.paper.bridge import (
    BRIDGE_MRR_THRESHOLD,
    BridgeTrace,
    BridgeTraceOverTime,
    ReasoningTrace,
    trace_bridge,
    trace_bridge_over_time,
    trace_reasoning,
)
from grok_circuits.analysis.paper.stages import StageComparison, compare_stages
from grok_circuits.analysis.patching.ablation import (
    ABLATIONS,
    Ablation,
    ablated_answer_logits,
    accuracy_under_ablation,
)
from grok_circuits.analysis.patching.causal_trace import (
    ACTIVATIONS,
    DEFAULT_DIRECTION,
    CausalTrace,
    causal_trace,
    rows_by_iteration,
    trace_attn_out,
    trace_counterfactuals,
    trace_head_out,
    trace_head_out_by_pos,
    trace_mlp_out,
    trace_pairs,
    trace_resid_mid,
    trace_resid_post,
    trace_resid_pre,
)
from grok_circuits.analysis.patching.interchange import (
    DASResult,
    das,
    interchange_accuracy,
)
from grok_circuits.tasks import Counterfactuals, PromptPairs, make_pairs

#: The former name of :func:`~grok_circuits.make_pairs`.
make_counterfactuals = make_pairs

__all__ = [
    "ABLATIONS",
    "ACTIVATIONS",
    "BRIDGE_MRR_THRESHOLD",
    "DEFAULT_DIRECTION",
    "DEFAULT_THRESHOLD",
    "EDGE_ABLATIONS",
    "EDGE_METHODS",
    "PAIR_METRICS",
    "Ablation",
    "Analysis",
    "BridgeTrace",
    "BridgeTraceOverTime",
    "CausalTrace",
    "DASResult",
    "Circuit",
    "CircuitMethod",
    "Component",
    "Counterfactuals",
    "Edge",
    "EdgeChange",
    "EdgeCircuit",
    "EdgeGraph",
    "EdgeReuseReport",
    "EdgeScores",
    "Faithfulness",
    "FaithfulnessOverCheckpoints",
    "EdgeROC",
    "MIB_FRACTIONS",
    "FourierSpectrum",
    "GroupedAccuracy",
    "LogitLensResult",
    "OverCheckpoints",
    "PairMetric",
    "PromptPairs",
    "ReasoningTrace",
    "ReuseReport",
    "StageComparison",
    "ablated_answer_logits",
    "accuracy",
    "accuracy_by",
    "accuracy_under_ablation",
    "all_components",
    "analyze",
    "as_pairs",
    "causal_trace",
    "check_fits",
    "circuit_reuse",
    "compare_edges",
    "compare_stages",
    "das",
    "edge_attribution",
    "edge_reuse",
    "faithfulness",
    "faithfulness_over_checkpoints",
    "interchange_accuracy",
    "edge_auroc",
    "read_mib_importances",
    "write_mib_importances",
    "find_circuit",
    "fourier_spectrum",
    "logit_difference",
    "logit_lens",
    "make_counterfactuals",
    "make_pairs",
    "over_checkpoints",
    "prediction_changed",
    "register_circuit_method",
    "register_edge_method",
    "select_components",
    "top1_predictions",
    "trace_attn_out",
    "trace_bridge",
    "trace_bridge_over_time",
    "trace_counterfactuals",
    "trace_head_out",
    "trace_head_out_by_pos",
    "trace_mlp_out",
    "trace_pairs",
    "trace_reasoning",
    "trace_resid_mid",
    "trace_resid_post",
    "trace_resid_pre",
    "HopTrace",
    "rows_by_iteration",
    "trace_hops",
    "Halting",
    "adaptive_halting",
]
