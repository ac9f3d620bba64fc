"""The paper's analyses, one call each: logit lens, causal tracing, counterfactual inputs,
bridge tracing over training, memorizing-vs-generalizing comparison, component ablation,
circuit finding, circuit reuse across tasks, and accuracy broken down by a property of the
examples.

Data flows one way: tasks -> train -> runs -> analysis -> viz. Every result is a small frozen
dataclass that prints as a short table and has a ``.plot()``.
"""

from grok_circuits.analysis.ablation import (
    Component,
    ablated_answer_logits,
    accuracy_under_ablation,
    all_components,
)
from grok_circuits.analysis.accuracy import GroupedAccuracy, accuracy_by, value_gap
from grok_circuits.analysis.bridge import (
    BRIDGE_MRR_THRESHOLD,
    BridgeTrace,
    BridgeTraceOverTime,
    ReasoningTrace,
    trace_bridge,
    trace_reasoning,
)
from grok_circuits.analysis.causal_tracing import (
    ACTIVATIONS,
    CausalTrace,
    causal_trace,
    trace_attn_out,
    trace_head_out,
    trace_head_out_by_pos,
    trace_mlp_out,
    trace_resid_mid,
    trace_resid_post,
    trace_resid_pre,
)
from grok_circuits.analysis.circuits import (
    CIRCUIT_METHODS,
    Circuit,
    CircuitMethod,
    ablation_circuit,
    find_circuit,
    select_components,
)
from grok_circuits.analysis.counterfactuals import (
    SWAPS,
    Counterfactuals,
    logit_difference,
    make_counterfactuals,
    prediction_changed,
    top1_predictions,
    trace_counterfactuals,
)
from grok_circuits.analysis.logit_lens import LogitLensResult, logit_lens
from grok_circuits.analysis.reuse import ReuseReport, circuit_reuse
from grok_circuits.analysis.stages import StageComparison, compare_stages

__all__ = [
    "CIRCUIT_METHODS",
    "Circuit",
    "CircuitMethod",
    "Component",
    "GroupedAccuracy",
    "ReuseReport",
    "ablated_answer_logits",
    "ablation_circuit",
    "accuracy_by",
    "accuracy_under_ablation",
    "all_components",
    "circuit_reuse",
    "find_circuit",
    "select_components",
    "value_gap",
    "ACTIVATIONS",
    "BRIDGE_MRR_THRESHOLD",
    "SWAPS",
    "BridgeTrace",
    "BridgeTraceOverTime",
    "CausalTrace",
    "Counterfactuals",
    "LogitLensResult",
    "ReasoningTrace",
    "StageComparison",
    "causal_trace",
    "compare_stages",
    "logit_difference",
    "logit_lens",
    "make_counterfactuals",
    "prediction_changed",
    "top1_predictions",
    "trace_attn_out",
    "trace_bridge",
    "trace_counterfactuals",
    "trace_head_out",
    "trace_head_out_by_pos",
    "trace_mlp_out",
    "trace_reasoning",
    "trace_resid_mid",
    "trace_resid_post",
    "trace_resid_pre",
]
