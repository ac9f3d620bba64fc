"""Metrics mirrored to TensorBoard and to Weights & Biases (offline), read back from their own
files and checked against metrics.json, the run's record; and mirroring changes no number."""

import dataclasses
import json
import struct

import pytest

from grok_circuits.config import RESUME_CHANGEABLE, TrainConfig
from grok_circuits.runs.run import read_metrics
from grok_circuits.training.loop import train
from tests.helpers import tiny_train_config

pytest.importorskip("tensorboard")
wandb = pytest.importorskip("wandb")


def _numbers(row: dict) -> dict:
    return {k: float(v) for k, v in row.items() if k not in ("step", "time")}


def tensorboard_rows(log_dir) -> dict[int, dict]:
    """step -> {tag: value}, read with TensorBoard's own event reader (last value per step)."""
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    acc = EventAccumulator(str(log_dir), size_guidance={"scalars": 0})
    acc.Reload()
    rows: dict[int, dict] = {}
    for tag in acc.Tags()["scalars"]:
        for event in acc.Scalars(tag):
            rows.setdefault(event.step, {})[tag] = event.value
    return rows


def wandb_history(path) -> list[dict]:
    """The history records of an offline ``.wandb`` file (LevelDB log format: 32 KiB blocks of
    chunks with a 7-byte header; W&B's own 7-byte file header first), parsed with wandb's
    protobuf ``Record``."""
    from wandb.proto import wandb_internal_pb2 as pb

    data = path.read_bytes()
    assert struct.unpack("<4sHB", data[:7])[0] == b":W&B"
    pos, block, record, out = 7, 32768, b"", []
    while pos + 7 <= len(data):
        if block - pos % block < 7:  # the rest of a block too short for a header is padding
            pos += block - pos % block
            continue
        _crc, length, kind = struct.unpack("<IHB", data[pos : pos + 7])
        if length == 0 and kind == 0:
            break
        chunk = data[pos + 7 : pos + 7 + length]
        pos += 7 + length
        record = chunk if kind in (1, 2) else record + chunk  # FULL/FIRST start a record
        if kind in (1, 4):  # FULL/LAST end it
            r = pb.Record()
            r.ParseFromString(record)
            if r.WhichOneof("record_type") == "history":
                items = r.history.item
                out.append(
                    {i.key or "/".join(i.nested_key): json.loads(i.value_json) for i in items}
                )
    return out


@pytest.fixture(scope="module")
def plain_and_mirrored(tiny_composition, tmp_path_factory):
    cfg = tiny_train_config(max_steps=40)
    root = tmp_path_factory.mktemp("tracking")
    mp = pytest.MonkeyPatch()
    mp.setenv("WANDB_MODE", "offline")
    mp.setenv("WANDB_SILENT", "true")
    try:
        plain = train(tiny_composition, cfg, out=root / "plain", progress=False)
        mirrored = train(
            tiny_composition,
            dataclasses.replace(cfg, log_to=("tensorboard", "wandb")),
            out=root / "mirrored",
            progress=False,
        )
    finally:
        mp.undo()
    return plain, mirrored


def test_mirroring_changes_no_metric(plain_and_mirrored):
    plain, mirrored = plain_and_mirrored
    assert [_numbers(r) for r in mirrored.metrics] == [_numbers(r) for r in plain.metrics]


def test_tensorboard_events_hold_every_metrics_row(plain_and_mirrored):
    _, run = plain_and_mirrored
    rows = tensorboard_rows(run.path / "tensorboard")
    expected = {r["step"]: _numbers(r) for r in read_metrics(run.path)}
    assert sorted(rows) == sorted(expected) == [0, 20, 40]
    for step, values in expected.items():
        assert set(rows[step]) == set(values) | {"time"}
        for tag, value in values.items():  # TensorBoard stores float32
            assert rows[step][tag] == pytest.approx(value, rel=1e-6, abs=1e-7), (step, tag)


def test_wandb_offline_run_holds_every_metrics_row(plain_and_mirrored):
    _, run = plain_and_mirrored
    (wandb_file,) = (run.path / "wandb").glob("offline-run-*/run-*.wandb")
    run_id = (run.path / "wandb" / "run_id").read_text()
    assert wandb_file.name == f"run-{run_id}.wandb"
    history = wandb_history(wandb_file)
    expected = read_metrics(run.path)
    assert [h["_step"] for h in history] == [r["step"] for r in expected]
    for h, r in zip(history, expected):
        for key, value in _numbers(r).items():
            assert h[key] == pytest.approx(value, rel=1e-12), key


def test_log_to_may_change_on_resume(plain_and_mirrored, tiny_composition, tmp_path):
    assert "log_to" in RESUME_CHANGEABLE
    plain, _ = plain_and_mirrored
    cfg = dataclasses.replace(plain.train_cfg, max_steps=60, log_to=("tensorboard",))
    resumed = train(tiny_composition, cfg, out=plain.path, resume=True, progress=False)
    assert resumed.last_step == 60
    assert sorted(tensorboard_rows(plain.path / "tensorboard")) == [60]  # mirrored from there


@pytest.mark.wrong_types
def test_bad_log_to_is_one_clear_error():
    with pytest.raises(ValueError, match="log_to must be a tuple of 'tensorboard' and/or"):
        TrainConfig(log_to=("mlflow",))
    with pytest.raises(ValueError, match="log_to"):
        TrainConfig(log_to="tensorboard")
