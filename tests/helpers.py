"""Factories shared by the tests."""

from grok_circuits.train import TrainConfig


def tiny_train_config(**overrides) -> TrainConfig:
    """A TrainConfig for tests: tiny model, CPU, frequent evaluation (SAELens-style factory)."""
    base = dict(
        max_steps=60,
        batch_size=64,
        eval_every=20,
        dense_until=40,
        model_size="tiny",
        device="cpu",
        warmup_steps=10,
        eval_size=200,
    )
    base.update(overrides)
    return TrainConfig(**base)
