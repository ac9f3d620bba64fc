"""A k-hop composition task trains end to end: prompts of 2 to 5 tokens in one training set,
and every probe, the 4-hop ones wider than anything trained on, evaluated. Kept small (a tiny
model, 200 steps, one thread: a few seconds)."""

from grok_circuits import train
from grok_circuits.analysis.accuracy import accuracy
from grok_circuits.tasks import make_task
from tests.conftest import TINY_KHOP
from tests.helpers import tiny_train_config

KHOP = dict(TINY_KHOP, train_hops=3, test_hops=4, max_test=50)


def test_khop_task_trains_and_every_split_is_evaluated(tmp_path):
    task = make_task("composition", preset=None, **KHOP)
    run = train(
        task, tiny_train_config(max_steps=200, eval_every=100), out=tmp_path, progress=False
    )
    model = run.model()
    assert model.cfg.n_ctx == 5  # the widest prompt, a 4-hop query, although training has 4
    assert task.train.tokens.shape[1] == 4
    logged = run.metrics[-1]
    evaluated = [n for n in task.probe_names if len(task.splits[n])]
    assert len(evaluated) >= len(task.probe_names) - 2  # a chain of OOD facts may not exist
    for name in evaluated:
        assert 0.0 <= accuracy(model, task.splits[name]) <= 1.0
        assert f"{name}_acc" in logged, name
    assert logged["train_inferred_acc"] > 0.0  # it learned something of what it was shown
