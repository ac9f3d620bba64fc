"""Interventions on activations: causal tracing and ablation."""
