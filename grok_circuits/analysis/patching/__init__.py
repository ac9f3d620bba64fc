"""Interventions on activations: causal tracing, ablation, and interchange interventions (DAS)."""
