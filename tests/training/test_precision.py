"""``precision="auto"``: bf16 autocast where the device has bf16 matrix products in hardware,
float32 elsewhere; the run stores what it used, and resuming keeps it."""

import json

import pytest
import torch

from grok_circuits import TrainConfig, load_run, train
from grok_circuits.cli import main
from grok_circuits.training import precision
from grok_circuits.training.precision import native_bf16, resolve_precision
from tests.conftest import TINY_COMPOSITION
from tests.helpers import tiny_train_config

CPU = torch.device("cpu")


def _strip_time(rows):
    return [{k: v for k, v in r.items() if k != "time"} for r in rows]


@pytest.fixture
def machine(monkeypatch):
    """Pretend the CPU has (``machine(True)``) or lacks bf16 matrix products in hardware."""

    def pretend(has: bool) -> None:
        monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: has, raising=False)
        monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: False, raising=False)

    return pretend


def test_auto_follows_the_cpus_probes_and_the_others_stay(machine, monkeypatch):
    machine(True)
    assert native_bf16(CPU) and resolve_precision("auto", CPU) == "bf16"
    machine(False)
    assert not native_bf16(CPU) and resolve_precision("auto", CPU) == "float32"
    monkeypatch.setattr(torch.cpu, "_is_amx_tile_supported", lambda: True)
    assert resolve_precision("auto", CPU) == "bf16"  # AMX alone is enough
    monkeypatch.delattr(torch.cpu, "_is_avx512_bf16_supported")
    monkeypatch.delattr(torch.cpu, "_is_amx_tile_supported")
    assert resolve_precision("auto", CPU) == "float32"  # a build without the probes: no
    for fixed in ("float32", "bf16"):
        assert resolve_precision(fixed, CPU) == fixed
    assert resolve_precision("auto", torch.device("meta")) == "float32"


@pytest.mark.wrong_types
def test_config_names_the_three_precisions():
    with pytest.raises(ValueError, match="'float32', 'bf16' or 'auto'"):
        TrainConfig(precision="fp16")  # type: ignore[arg-type]


@pytest.mark.parametrize("has", [True, False])
def test_an_auto_run_trains_as_the_precision_it_stores(tiny_composition, tmp_path, machine, has):
    """The same metrics, row for row, as a run told the concrete precision; and bf16 and float32
    runs differ, so the comparison can tell them apart."""
    machine(has)
    cfg = tiny_train_config(max_steps=40, precision="auto")
    auto = train(tiny_composition, cfg, out=tmp_path / "auto", progress=False)
    used = "bf16" if has else "float32"
    other = {"bf16": "float32", "float32": "bf16"}[used]
    assert auto.train_cfg.precision == used == auto.summary()["precision"]
    same = train(
        tiny_composition, tiny_train_config(max_steps=40, precision=used), out=tmp_path / "a"
    )
    differ = train(
        tiny_composition, tiny_train_config(max_steps=40, precision=other), out=tmp_path / "b"
    )
    assert _strip_time(auto.metrics) == _strip_time(same.metrics)
    assert _strip_time(auto.metrics) != _strip_time(differ.metrics)


def test_resuming_elsewhere_keeps_the_precision_the_run_started_with(
    tiny_composition, tmp_path, machine
):
    """Started where auto meant bf16, resumed with the same "auto" config where it would mean
    float32: the run stays bf16 and ends as an uninterrupted bf16 run does."""
    full = train(
        tiny_composition, tiny_train_config(max_steps=80, precision="bf16"), out=tmp_path / "full"
    )
    machine(True)
    train(tiny_composition, tiny_train_config(max_steps=40, precision="auto"), out=tmp_path / "r")
    machine(False)
    resumed = train(
        tiny_composition,
        tiny_train_config(max_steps=80, precision="auto"),
        out=tmp_path / "r",
        resume=True,
        progress=False,
    )
    assert resumed.train_cfg.precision == "bf16"
    assert _strip_time(resumed.metrics) == _strip_time(full.metrics)
    with pytest.raises(ValueError, match=r"different \['precision'\]"):
        train(
            tiny_composition,
            tiny_train_config(max_steps=120, precision="float32"),
            out=tmp_path / "r",
            resume=True,
        )


def test_cli_says_what_auto_chose_and_refuses_another_precision_on_resume(
    tmp_path, capsys, machine
):
    machine(False)
    out = tmp_path / "run"
    common = ["--model-size", "tiny", "--threads", "1", "--no-progress", "--no-report"]
    task = [f"--task-param={k}={v}" for k, v in TINY_COMPOSITION.items()]
    args = ["train", "composition", "--out", str(out), "--steps", "20", *common, *task]
    assert main(args) == 0
    said = capsys.readouterr().out
    assert "precision auto: float32 (this cpu has no bf16 matrix products in hardware" in said
    assert json.loads((out / "train_config.json").read_text())["precision"] == "float32"
    assert load_run(out).summary()["precision"] == "float32"

    assert main([*args, "--resume", "--steps", "40", "--precision", "bf16"]) == 2
    err = capsys.readouterr().err.strip().splitlines()
    assert len(err) == 1 and "--precision bf16 (the run has precision='float32')" in err[0]

    chosen = tmp_path / "chosen"
    assert main([*args[:2], "--out", str(chosen), *args[4:], "--precision", "bf16"]) == 0
    assert "precision auto" not in capsys.readouterr().out
    assert load_run(chosen).train_cfg.precision == "bf16"


def test_autocast_runs_the_products_in_bf16_only_where_auto_resolves_so(machine):
    layer = torch.nn.Linear(8, 8)
    x = torch.randn(2, 8)
    machine(True)
    with precision.autocast("auto", CPU):
        assert layer(x).dtype == torch.bfloat16
    machine(False)
    with precision.autocast("auto", CPU):
        assert layer(x).dtype == torch.float32


def test_a_gpu_counts_only_without_emulation_and_older_torch_is_asked_plainly(monkeypatch):
    gpu = torch.device("cuda")
    asked = []

    def recent(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return including_emulation  # an emulating GPU: bf16 "supported", but not in hardware

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", recent)
    assert resolve_precision("auto", gpu) == "float32" and asked == [False]
    monkeypatch.setattr(torch.cuda, "is_bf16_supported", lambda: True)  # torch < 2.4
    assert resolve_precision("auto", gpu) == "bf16"
