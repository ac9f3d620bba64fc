"""Fixtures of the edge tests: a random 3-layer tiny model with a few of its pairs."""

import pytest

from grok_circuits import make_pairs


@pytest.fixture(scope="module")
def small(composition_model, tiny_composition):
    """A random 3-layer tiny model and 24 of its pairs (swap h)."""
    return composition_model, make_pairs(tiny_composition, "h", n_examples=24, seed=0)
