"""Fixtures for the analysis tests: tiny seeded models built from config literals, and one
short training run shared by the Run-based tests (tiny model, CPU, about 100 steps)."""

import warnings

import pytest
import torch

from grok_circuits import backend
from grok_circuits.backend import Model, ModelConfig
from grok_circuits.model import build_model, model_config
from grok_circuits.training.loop import train
from tests.helpers import tiny_train_config


def tiny_cfg(task, **overrides) -> ModelConfig:
    """The tiny model for ``task`` (2 layers, d_model 32, 2 heads), with overrides."""
    return model_config(task, "tiny", **overrides)


@pytest.fixture(scope="session")
def composition_model(tiny_composition) -> Model:
    """A random 3-layer model on the tiny composition task (more layers than 'tiny' so that
    patches at a middle layer exist)."""
    return build_model(tiny_cfg(tiny_composition, n_layers=3), seed=1).eval()


@pytest.fixture(scope="session")
def comparison_model(tiny_comparison) -> Model:
    return build_model(tiny_cfg(tiny_comparison), seed=2).eval()


@pytest.fixture(scope="session")
def rotary_model(tiny_composition) -> Model:
    """Rotary positions: causal tracing must take its full-forward path on this model. (The
    4.x bridge refuses rotary models, and takes the full-forward path on every model.)"""
    if not backend.supports("all_architectures"):
        pytest.skip(
            f"{backend.BACKEND} (TransformerLens {backend.TL_VERSION}) refuses rotary models"
        )
    cfg = tiny_cfg(tiny_composition, positional_embedding_type="rotary", rotary_dim=16)
    return build_model(cfg, seed=3).eval()


@pytest.fixture(scope="session")
def tiny_run(tiny_composition, tmp_path_factory):
    """A short run on the tiny composition task: a few checkpoints, never groks."""
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        return train(
            tiny_composition,
            tiny_train_config(max_steps=60, eval_every=20, dense_until=60),
            out=tmp_path_factory.mktemp("analysis_run"),
            progress=False,
        )


@pytest.fixture
def no_hooks_left():
    """Checks, after the test, that a model has no hook left on any hook point."""
    models: list[Model] = []
    yield models.append
    for model in models:
        left = [
            name
            for name, hp in model.hook_dict.items()
            if hp._forward_hooks or hp._backward_hooks or hp.fwd_hooks or hp.bwd_hooks
        ]
        assert not left, f"hooks left on {left}"


def seeded_tokens(shape, high, seed) -> torch.Tensor:
    g = torch.Generator().manual_seed(seed)
    return torch.randint(0, high, shape, generator=g)
