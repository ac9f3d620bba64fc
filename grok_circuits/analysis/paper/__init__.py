"""Analyses that know the paper's tasks: the bridge entity, stages, accuracy by group and the
one-call report."""
