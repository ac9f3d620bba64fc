"""Factories shared by the tests."""

from grok_circuits.training.loop import TrainConfig

#: A mixed task small enough for unit tests (composition and comparison over 30 entities).
TINY_MIXED = dict(
    n_entities=30,
    n_relations=6,
    out_degree=3,
    composition_phi=2.0,
    composition_test_id_fraction=0.1,
    composition_ood_fraction=0.1,
    n_attributes=3,
    n_values=4,
    comparison_phi=2.0,
    comparison_test_id_fraction=0.1,
)


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
        threads=1,  # tiny models gain nothing from more, and tests must not depend on the load
    )
    base.update(overrides)
    return TrainConfig(**base)
