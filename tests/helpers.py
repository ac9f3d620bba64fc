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


def straight_and_resumed(task, tmp_path, steps: int, stop_at: int, **overrides):
    """Two runs of ``tiny_train_config(max_steps=steps, **overrides)`` on ``task``: one trained
    straight (``tmp_path / "full"``), and one stopped at ``stop_at`` and resumed to ``steps``
    (``tmp_path / "half"``), for the tests of exact resume."""
    from grok_circuits.training.loop import train

    cfg = tiny_train_config(max_steps=steps, **overrides)
    full = train(task, cfg, out=tmp_path / "full", progress=False)
    half = tiny_train_config(max_steps=stop_at, **overrides)
    train(task, half, out=tmp_path / "half", progress=False)
    resumed = train(task, cfg, out=tmp_path / "half", resume=True, progress=False)
    return full, resumed


def without_time(rows: list[dict]) -> list[dict]:
    """Metrics rows without their wall-clock ``time``, the one field a resumed run changes."""
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]
