"""The hop curriculum (``TrainConfig.hop_curriculum``): two hops first, a hop more each time the
current hop count's ID test accuracy passes the threshold; resumable."""

import pytest
import torch

from grok_circuits import make_task, train
from grok_circuits.training import loop
from grok_circuits.training.curriculum import HopCurriculum
from tests.helpers import tiny_train_config

THREE_HOPS = dict(
    n_entities=30, n_relations=6, out_degree=3, phi=2.0, test_id_fraction=0.2, train_hops=3
)


@pytest.fixture(scope="module")
def three_hops():
    return make_task("composition", preset=None, test_hops=3, **THREE_HOPS)


def _hops(task, name: str) -> list[int]:
    """Each row's hop count, read off its decoded prompt (one relation token per hop)."""
    n = len(task.splits[name])
    return [task.decode(name, i).split("->")[0].count("<r_") for i in range(n)]


def test_each_stage_trains_on_the_rows_of_at_most_its_hops(three_hops):
    curriculum = HopCurriculum(three_hops, 0.9, torch.device("cpu"))
    hops = _hops(three_hops, "train")
    assert sorted(set(hops)) == [1, 2, 3]
    for k in (2, 3):
        rows = curriculum.rows(k)
        assert len(rows) == sum(h <= k for h in hops)
        assert max((rows.tokens != three_hops.vocab.pad_id).sum(1) - 1) == k
    metrics = [
        {"test_id_acc": 0.5, "test_id_3hop_acc": 0.99},  # 2 hops not yet learned
        {"test_id_acc": 0.95, "test_id_3hop_acc": 0.99},  # threshold 0.9 passed: add hop 3
        {"test_id_acc": 0.2, "test_id_3hop_acc": 0.99},  # never back, never past train_hops
    ]
    assert [curriculum.stage(metrics[:n]) for n in range(4)] == [2, 2, 3, 3]


def test_training_follows_the_curriculum_and_resumes_exactly(three_hops, tmp_path, monkeypatch):
    trained: list[int] = []  # the most hops in the rows each step could draw from
    step_fn = loop.train_step

    def spy(model, optimizer, split, step, cfg, **kw):
        trained.append(int(((split.tokens != three_hops.vocab.pad_id).sum(1) - 1).max()))
        return step_fn(model, optimizer, split, step, cfg, **kw)

    monkeypatch.setattr(loop, "train_step", spy)
    cfg = tiny_train_config(max_steps=60, eval_every=10, hop_curriculum=0.12)
    full = train(three_hops, cfg, out=tmp_path / "full", progress=False)
    stages = {row["step"]: row["curriculum_hops"] for row in full.metrics}
    moved = min(s for s, k in stages.items() if k == 3)
    assert 0 < moved < 60  # the stage changed during the run (at the first test_id > 0.12)
    assert full.metrics[moved // 10]["test_id_acc"] > 0.12
    assert trained == [2] * moved + [3] * (60 - moved)

    monkeypatch.setattr(loop, "train_step", step_fn)
    train(
        three_hops,
        tiny_train_config(max_steps=30, eval_every=10, hop_curriculum=0.12),
        out=tmp_path / "half",
        progress=False,
    )
    resumed = train(three_hops, cfg, out=tmp_path / "half", resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(resumed.metrics) == strip(full.metrics)


def test_a_two_hop_task_has_no_curriculum(tiny_composition, tmp_path):
    with pytest.raises(ValueError, match="train_hops=3"):
        train(tiny_composition, tiny_train_config(hop_curriculum=0.95), out=tmp_path / "r")
    with pytest.raises(ValueError, match="hop_curriculum"):
        tiny_train_config(hop_curriculum=1.5)
