"""Sweep specs (names, errors), the in-process engine, the report over seeds and its plot, and the
bf16 training loss. Ray itself is tested in test_sweeps_ray.py."""

import dataclasses
import json
import sys

import pytest
import torch

from grok_circuits.cli import main
from grok_circuits.io import atomic_write_json
from grok_circuits.model import build_model, model_config
from grok_circuits.sweeps import SweepSpec, _resolve, load_sweep, sweep
from grok_circuits.training.loop import answer_loss
from grok_circuits.training.plugins import loss_for
from tests.conftest import TINY_COMPOSITION
from tests.helpers import tiny_train_config

TINY = {k: v for k, v in TINY_COMPOSITION.items() if k != "phi"}
SPEC_YAML = """\
task: composition
preset: tutorial
grid:              # every combination
  seed: [0, 1]
  phi: [4.0, 8.0]  # task parameters and TrainConfig fields, by name
train:             # fixed TrainConfig fields
  max_steps: 100
  model_size: tiny
"""


def test_the_documented_spec_expands_to_every_combination(tmp_path):
    path = tmp_path / "spec.yaml"
    path.write_text(SPEC_YAML)
    from grok_circuits.sweeps import load_spec

    trials = load_spec(path).trials()
    assert [t.name for t in trials] == [
        "phi=4.0,seed=0", "phi=8.0,seed=0", "phi=4.0,seed=1", "phi=8.0,seed=1",
    ]  # fmt: skip
    for t in trials:
        cfg = t.config()
        assert (cfg.max_steps, cfg.model_size, cfg.threads) == (100, "tiny", 1)
        assert t.task_params["seed"] == cfg.seed  # a bare seed seeds data and weights
        assert t.task_params["phi"] in (4.0, 8.0) and "phi" not in t.train


def test_task_dot_and_train_dot_set_one_seed_alone():
    spec = SweepSpec.from_dict(
        {"task": "composition", "grid": {"task.seed": [3], "train.seed": [5], "lr": [0.01]}}
    )
    (trial,) = spec.trials()
    assert trial.task_params["seed"] == 3 and trial.config().seed == 5
    assert trial.config().lr == 0.01


def test_a_name_of_both_must_be_qualified():
    with pytest.raises(ValueError, match="both a task parameter and a TrainConfig field; write"):
        _resolve("lr", {"lr", "phi"}, {"lr", "seed"})
    assert _resolve("seed", {"seed"}, {"seed"}) == ["task", "train"]


def test_runs_list_crossed_with_the_grid():
    spec = SweepSpec.from_dict(
        {
            "task": "composition",
            "runs": [{"phi": 2.0, "weight_decay": 0.1}, {"phi": 4.0, "weight_decay": 1.0}],
            "grid": {"seed": [0, 1, 2]},
        }
    )
    trials = spec.trials()
    assert len(trials) == 6
    assert {(t.task_params["phi"], t.config().weight_decay) for t in trials} == {
        (2.0, 0.1),
        (4.0, 1.0),
    }


@pytest.mark.parametrize(
    "text, message",
    [
        (
            "task: composition\ngrid:\n  phii: [1, 2]\n",
            "'phii' is neither a task parameter nor a TrainConfig field; did you mean 'phi'?",
        ),
        ("task: composition\ngrid: {seed: [0, 1]\n", "is not valid YAML at line"),
        ("task: composition\ngrid:\n  phi: 4.0\n", "grid 'phi' must be a non-empty list"),
        (
            "task: composition\ntrain:\n  max_step: 5\n",
            "unknown TrainConfig field 'max_step'; did you mean 'max_steps'?",
        ),
        ("task: composition\ntrain:\n  lr: fast\n", "TrainConfig.lr must be float"),
        ("task: composition\ngrid:\n  train.phi: [1.0]\n", "'train.phi' names no train field"),
        ("grid:\n  seed: [0]\n", "needs a task"),
        ("task: composition\ngrids: {}\n", "unknown sweep spec key(s) ['grids']"),
        ("task: nope\n", "unknown task 'nope'"),
    ],
)
def test_bad_specs_are_one_error_line(tmp_path, capsys, text, message):
    path = tmp_path / "spec.yaml"
    path.write_text(text)
    assert main(["sweep", str(path), "--out", str(tmp_path / "out"), "--local"]) == 2
    err = capsys.readouterr().err.strip()
    assert len(err.splitlines()) == 1 and err.startswith("error: ")
    assert message in err
    assert not (tmp_path / "out").exists()  # nothing was started


def test_without_ray_the_error_says_how_to_install_it(tmp_path, monkeypatch, capsys):
    path = tmp_path / "spec.json"
    path.write_text(json.dumps({"task": "composition", "task_params": TINY}))
    monkeypatch.setitem(sys.modules, "ray", None)  # import ray fails
    assert main(["sweep", str(path), "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err
    assert 'pip install -e ".[sweep]"' in err and "--local" in err


def _plant(run_dir, train_acc: list[float], id_acc: list[float]) -> None:
    """Replace a run's metrics with accuracies whose stages are known by hand."""
    rows = json.loads((run_dir / "metrics.json").read_text())
    for row, tr, i in zip(rows, train_acc, id_acc):
        row["train_inferred_acc"], row["test_id_acc"] = tr, i
    atomic_write_json(run_dir / "metrics.json", rows)


@pytest.fixture(scope="module")
def local_sweep(tmp_path_factory):
    spec = {
        "task": "composition",
        "task_params": TINY,
        "grid": {"seed": [0, 1], "phi": [1.5, 2.0]},
        "train": dict(max_steps=10, eval_every=5, batch_size=64, eval_size=100, model_size="tiny",
                      device="cpu"),
    }  # fmt: skip
    return sweep(spec, tmp_path_factory.mktemp("sweep") / "out", engine="local", progress=False)


def test_local_engine_trains_every_trial_and_skips_them_after(local_sweep):
    assert [r["status"] for r in local_sweep.results] == ["trained"] * 4
    assert {r.last_step for r in local_sweep.runs().values()} == {10}
    again = sweep(local_sweep.spec, local_sweep.path, engine="local", progress=False)
    assert [r["status"] for r in again.results] == ["skipped"] * 4
    with pytest.raises(ValueError, match="holds another sweep"):
        sweep(dataclasses.replace(local_sweep.spec, preset="paper"), local_sweep.path)


def test_report_means_over_seeds_and_counts_runs_that_never_grokked(local_sweep, tmp_path):
    path = local_sweep.path
    # evaluations at steps 0, 5, 10; memorize = train acc >= 0.99, generalize = ID acc >= 0.95
    _plant(path / "phi=1.5,seed=0", [0.1, 1.0, 1.0], [0.0, 0.2, 0.96])  # 5, 10
    _plant(path / "phi=1.5,seed=1", [0.1, 0.5, 1.0], [0.0, 0.2, 0.50])  # 10, never
    _plant(path / "phi=2.0,seed=0", [0.1, 1.0, 1.0], [0.0, 0.97, 0.97])  # 5, 5
    _plant(path / "phi=2.0,seed=1", [0.1, 1.0, 1.0], [0.0, 0.2, 0.99])  # 5, 10
    table = load_sweep(path).report()
    assert list(table.index) == [1.5, 2.0]
    assert table.loc[1.5, ("memorize_step", "mean")] == 7.5
    assert table.loc[1.5, ("generalize_step", "mean")] == 10.0
    assert table.loc[1.5, ("generalize_step", "n_reached")] == 1
    assert table.loc[2.0, ("generalize_step", "mean")] == 7.5
    assert table.loc[2.0, ("generalize_step", "std")] == pytest.approx(2.5 * 2**0.5)
    assert table.loc[2.0, ("id_acc", "mean")] == pytest.approx(0.98)
    assert (table[("trials", "n")] == 2).all()

    assert main(["sweep-report", str(path), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "steps.png").stat().st_size > 0
    fig = load_sweep(path).plot()  # steps against phi: the mean line per stage
    lines = {ln.get_label(): ln for ln in fig.axes[0].get_lines()}
    gen = lines["generalize (ID acc >= 0.95)"]
    assert list(gen.get_xdata()) == [1.5, 2.0] and list(gen.get_ydata()) == [10.0, 7.5]


def test_report_of_a_sweep_over_seeds_only(tmp_path, capsys):
    spec = {
        "task": "composition",
        "task_params": {**TINY, "phi": 2.0},
        "grid": {"seed": [0, 1]},
        "train": dict(max_steps=5, eval_every=5, batch_size=64, eval_size=100, model_size="tiny",
                      device="cpu"),
    }  # fmt: skip
    path = sweep(spec, tmp_path / "seeds", engine="local", progress=False).path
    capsys.readouterr()
    assert main(["sweep-report", str(path)]) == 0  # the plot has the seed on its axis
    printed = capsys.readouterr()
    assert "memorize_step" in printed.out and printed.err == ""
    assert (path / "steps.png").stat().st_size > 0
    assert main(["sweep-report", str(path), "--x", "phi"]) == 2
    assert capsys.readouterr().err == "error: --x phi is not swept; the sweep varies ['seed']\n"


def test_bf16_loss_is_float32_and_close_to_the_float32_loss(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    batch = tiny_composition.train.select(slice(0, 64))
    loss = loss_for(tiny_train_config())
    full = answer_loss(model, batch, loss)
    half = answer_loss(model, batch, loss, precision="bf16")
    assert full.dtype == half.dtype == torch.float32
    assert half.item() != full.item()  # autocast did run the products in bf16
    torch.testing.assert_close(half, full, rtol=2e-2, atol=0)
