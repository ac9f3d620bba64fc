"""The search for the batch that fills the device, on planted throughput curves whose answer is
known, and once for real on the CPU."""

import dataclasses
from types import SimpleNamespace

import pytest
import torch

from grok_circuits.tasks import make_task
from grok_circuits.training import throughput as throughput_module
from grok_circuits.training.loop import train, train_step
from grok_circuits.training.presets import train_config
from grok_circuits.training.throughput import batch_that_fills, training_throughput
from tests.helpers import tiny_train_config

#: A stand-in task with a training set larger than any batch tried (only its size is read when
#: ``measure`` is given).
BIG = SimpleNamespace(train=range(1 << 22))


def _curve(full_at: int, oom_at: int | None = None):
    """Examples per second that double with the batch up to ``full_at`` and stay flat after
    (a device that is full at ``full_at``), with an out-of-memory error from ``oom_at`` on."""
    tried = []

    def measure(batch: int) -> tuple[float, float]:
        tried.append(batch)
        if oom_at is not None and batch >= oom_at:
            raise torch.cuda.OutOfMemoryError(f"planted at {batch}")
        return 10.0 * min(batch, full_at), batch / 1024

    return measure, tried


def test_the_search_stops_where_doubling_stops_paying():
    measure, tried = _curve(full_at=4096)
    cfg = tiny_train_config(batch_size=512)
    found = batch_that_fills(BIG, cfg, max_batch=1 << 20, measure=measure, progress=False)
    # 512 .. 4096 each double the rate; 8192 gains nothing, so 4096 fills it
    assert tried == [512, 1024, 2048, 4096, 8192]
    assert found.batch_size == 4096
    assert found.batches == tuple(tried)
    assert found.examples_per_second == (5120.0, 10240.0, 20480.0, 40960.0, 40960.0)
    assert "gained 1.000x" in found.stopped
    assert list(found.to_frame()["batch_size"]) == tried


def test_out_of_memory_and_the_limits_end_the_search(tiny_composition):
    cfg = tiny_train_config(batch_size=256)
    measure, tried = _curve(full_at=1 << 30, oom_at=2048)
    found = batch_that_fills(BIG, cfg, max_batch=1 << 20, measure=measure, progress=False)
    assert tried == [256, 512, 1024, 2048] and found.batch_size == 1024
    assert found.stopped == "out of memory at batch 2048"

    measure, tried = _curve(full_at=1 << 30)
    found = batch_that_fills(BIG, cfg, max_batch=600, measure=measure, progress=False)
    assert tried == [256, 512] and found.batch_size == 512  # 1024 would pass max_batch

    # never a batch past the training set (252 rows): 16, 32, 64, 128, and 256 is not tried
    measure, tried = _curve(full_at=1 << 30)
    small = tiny_train_config(batch_size=16)
    found = batch_that_fills(tiny_composition, small, measure=measure, progress=False)
    assert len(tiny_composition.train) == 252
    assert tried == [16, 32, 64, 128] and found.batch_size == 128


def test_bad_input_is_one_clear_error(tiny_composition):
    cfg = tiny_train_config(batch_size=512)
    with pytest.raises(ValueError, match="min_gain must be above 1"):
        batch_that_fills(BIG, cfg, min_gain=1.0)
    with pytest.raises(ValueError, match="max_batch=256"):
        batch_that_fills(BIG, cfg, max_batch=256)
    with pytest.raises(ValueError, match="already covers the training set"):
        batch_that_fills(tiny_composition, cfg)
    measure, _ = _curve(full_at=1, oom_at=1)
    with pytest.raises(RuntimeError, match="out of memory at batch 512"):
        batch_that_fills(BIG, cfg, measure=measure, progress=False)


def test_a_real_search_on_the_cpu(tiny_composition):
    cfg = tiny_train_config(batch_size=16)
    found = batch_that_fills(tiny_composition, cfg, max_batch=32, steps=2, warmup=1, progress=False)
    assert found.batches == (16, 32) and found.batch_size in (16, 32)
    assert all(rate > 0 for rate in found.examples_per_second)
    assert training_throughput(tiny_composition, cfg, steps=2, warmup=1) > 0


def _modular_preset():
    """The modular tutorial task and its training preset (full batch, no clipping), on a tiny
    model on the CPU."""
    task = make_task("modular", preset="tutorial")
    cfg = dataclasses.replace(
        train_config("modular", "tutorial"), model_size="tiny", device="cpu", threads=1
    )
    return task, cfg


def test_throughput_without_clipping():
    """``grad_clip=None`` (the modular presets) times a step that does not clip."""
    task, cfg = _modular_preset()
    assert cfg.grad_clip is None
    assert training_throughput(task, cfg, steps=1, warmup=1) > 0


def test_a_full_batch_config_is_measured_once(tiny_composition):
    """``batch_size=None`` trains on the whole training set every step: there is nothing larger
    to try, so the search measures that batch once and says so."""
    cfg = tiny_train_config(batch_size=None)
    measure, tried = _curve(full_at=1 << 30)
    found = batch_that_fills(tiny_composition, cfg, measure=measure, progress=False)
    assert tried == [252] and found.batch_size == 252 and found.batches == (252,)
    assert "batch_size=None" in found.stopped

    task, cfg = _modular_preset()  # and for real, on a preset without clipping either
    found = batch_that_fills(task, cfg, steps=1, warmup=1, progress=False)
    assert found.batches == (len(task.train),) and found.examples_per_second[0] > 0


def _weights_after_train(task, cfg, out) -> dict[str, torch.Tensor]:
    run = train(task, cfg, out=out, progress=False)
    assert run.last_step == cfg.max_steps
    return run.model(cfg.max_steps, device="cpu").state_dict()


def _weights_after_timing(task, cfg, monkeypatch, *, steps, warmup) -> dict[str, torch.Tensor]:
    """The weights of the model :func:`training_throughput` trained (``warmup + steps`` steps),
    caught where it hands the model to the shared training step."""
    models = []

    def train_step_keeping_the_model(model, *args, **kwargs):
        models.append(model)
        return train_step(model, *args, **kwargs)

    monkeypatch.setattr(throughput_module, "train_step", train_step_keeping_the_model)
    assert training_throughput(task, cfg, steps=steps, warmup=warmup) > 0
    assert len(models) == warmup + steps and all(m is models[0] for m in models)
    return {k: v.detach().cpu() for k, v in models[0].state_dict().items()}


@pytest.mark.parametrize(
    "options",
    [
        {},
        {"grad_filter": "ema"},
        {"loss": "stablemax"},
        {"n_loops": 2},
        {"grad_clip": None, "batch_size": None},  # the modular presets: full batch, no clipping
    ],
)
def test_the_timed_step_is_the_training_step(tiny_composition, tmp_path, monkeypatch, options):
    """Six steps timed by :func:`training_throughput` leave the weights that six steps of
    ``train()`` (same seed, same data) leave, bit for bit: the same model, batches,
    learning-rate warm-up, loss, gradient hooks (Grokfast here), clipping (or none) and
    optimizer."""
    cfg = tiny_train_config(max_steps=6, eval_every=6, **options)
    trained = _weights_after_train(tiny_composition, cfg, tmp_path / "run")
    timed = _weights_after_timing(tiny_composition, cfg, monkeypatch, steps=4, warmup=2)
    assert trained.keys() == timed.keys()
    for name in trained:
        torch.testing.assert_close(timed[name], trained[name], rtol=0, atol=0, msg=name)


def test_the_timed_step_runs_the_gradient_hooks(tiny_composition, monkeypatch):
    """Grokfast changes what the timed steps compute, so the test above sees the hook run."""
    plain = tiny_train_config(max_steps=6)
    grokfast = dataclasses.replace(plain, grad_filter="ema")
    a = _weights_after_timing(tiny_composition, plain, monkeypatch, steps=4, warmup=2)
    b = _weights_after_timing(tiny_composition, grokfast, monkeypatch, steps=4, warmup=2)
    assert any(not torch.equal(a[k], b[k]) for k in a)
