"""The search for the batch that fills the device, on planted throughput curves whose answer is
known, and once for real on the CPU."""

from types import SimpleNamespace

import pytest
import torch

from grok_circuits.gpu import batch_that_fills, training_throughput
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
