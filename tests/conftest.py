"""Shared fixtures: tiny seeded tasks and a short training run, all offline and fast."""

import pytest

from grok_circuits.tasks import make_task

TINY_COMPOSITION = dict(
    n_entities=30, n_relations=6, out_degree=3, phi=2.0, test_id_fraction=0.1, ood_fraction=0.1
)
TINY_COMPARISON = dict(n_entities=20, n_attributes=3, n_values=4, phi=2.0, test_id_fraction=0.1)


@pytest.fixture(scope="session")
def tiny_composition():
    return make_task("composition", preset=None, **TINY_COMPOSITION)


@pytest.fixture(scope="session")
def tiny_comparison():
    return make_task("comparison", preset=None, **TINY_COMPARISON)
