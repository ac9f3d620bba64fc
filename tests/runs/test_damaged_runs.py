"""A run with a damaged file: a damaged checkpoint is left out (with one warning) and counted; a
damaged JSON file is an error that names it."""

import re
import shutil
import warnings

import pytest

from grok_circuits import load_run, trace_bridge_over_time, train
from grok_circuits.cli import main
from grok_circuits.runs import run as runs_module
from tests.helpers import tiny_train_config


@pytest.fixture(scope="module")
def finished_run(tiny_composition, tmp_path_factory):
    """A tiny 60-step run, checkpointed at 0, 20, 40 and 60 (copied by each test)."""
    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_composition, tiny_train_config(max_steps=60), out=out, progress=False)
    return out


@pytest.fixture
def run_dir(finished_run, tmp_path):
    return shutil.copytree(finished_run, tmp_path / "run")


def _truncate_weights(run_dir, step: int) -> None:
    path = next((run_dir / "checkpoints").glob(f"step_{step:07d}.safetensors"))
    path.write_bytes(path.read_bytes()[:100])  # as by a crash or an interrupted copy


def test_a_damaged_checkpoint_is_left_out_with_one_warning(run_dir, monkeypatch):
    _truncate_weights(run_dir, 40)
    with pytest.warns(UserWarning, match="skipping step 40") as caught:
        run = load_run(run_dir)
    assert len(caught) == 1
    with warnings.catch_warnings():
        warnings.simplefilter("error", UserWarning)  # no second warning from this Run
        assert run.steps == [0, 20, 60]
        assert run.damaged_steps == [40]
        assert run.nearest_step(40) in (20, 60) and run.nearest_step(45) == 60
        assert run.summary()["damaged_checkpoints"] == 1
        with pytest.raises(ValueError, match="step 40 cannot be loaded; intact steps"):
            run.model(40)
        assert run.model(60) is not None


def test_digests_are_computed_once_per_file_state(run_dir, monkeypatch):
    run = load_run(run_dir)
    hashed = []
    real = runs_module.sha256
    monkeypatch.setattr(runs_module, "sha256", lambda path: hashed.append(path) or real(path))
    assert run.steps == [0, 20, 40, 60] and run.summary()["damaged_checkpoints"] == 0
    assert hashed == []  # load_run verified them; nothing changed since
    _truncate_weights(run_dir, 20)
    with pytest.warns(UserWarning, match="skipping step 20"):
        assert run.steps == [0, 40, 60]
    assert len(hashed) == 4  # the changed file is noticed, and the checkpoints verified again


def test_trace_bridge_over_time_skips_a_damaged_checkpoint(run_dir):
    _truncate_weights(run_dir, 20)
    with pytest.warns(UserWarning, match="skipping step 20"):
        run = load_run(run_dir)
    over_time = trace_bridge_over_time(run, n_examples=10)
    assert list(over_time.steps) == [0, 40, 60]


def test_report_counts_damaged_checkpoints(run_dir, tmp_path, capsys):
    _truncate_weights(run_dir, 40)
    assert main(["report", str(run_dir), "--out", str(tmp_path / "fig")]) == 0
    printed = capsys.readouterr()
    assert re.search(r"damaged_checkpoints +1\n", printed.out)
    assert printed.err.startswith("warning: ") and "skipping step 40" in printed.err
    assert (tmp_path / "fig" / "curves.png").is_file()


@pytest.mark.parametrize(
    "name",
    ["task.json", "model_config.json", "train_config.json", "metrics.json", "checkpoints.json"],
)
def test_a_damaged_run_file_is_a_one_line_error_naming_it(run_dir, capsys, name):
    (run_dir / name).write_bytes(bytes(range(128, 256)))  # the right name, random bytes
    assert main(["report", str(run_dir)]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    assert f"{run_dir / name} is damaged" in err


def test_a_missing_metrics_file_is_damage_for_report_and_resume(run_dir, capsys):
    """A run with checkpoints and no metrics.json has lost its history: report said "steps 0",
    and a resume wrote only the new rows, losing the grok and saturation steps silently."""
    (run_dir / "metrics.json").unlink()
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main(["report", str(run_dir), "--out", str(run_dir / "fig")]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run_dir / 'metrics.json'} is missing") and err.count("\n") == 1
    assert "4 checkpoints" in err and "restore it from a copy" in err
    assert main(_resume_args(run_dir) + ["--steps", "80", "--no-report"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: {run_dir / 'metrics.json'} is missing") and err.count("\n") == 1
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_missing_metrics_file_stops_the_api_too(run_dir, tiny_composition):
    (run_dir / "metrics.json").unlink()
    with pytest.raises(ValueError, match="metrics.json is missing, though the run has 4 checkp"):
        load_run(run_dir)
    cfg = tiny_train_config(max_steps=80)
    with pytest.raises(ValueError, match="metrics.json is missing"):
        train(tiny_composition, cfg, out=run_dir, resume=True, progress=False)
    assert not (run_dir / "metrics.json").exists()


def _resume_args(run_dir) -> list[str]:
    args = ["train", "composition", "--out", str(run_dir), "--resume", "--no-progress"]
    args += ["--model-size", "tiny", "--device", "cpu"]
    for kv in ("n_entities=30", "n_relations=6", "out_degree=3", "phi=2.0"):
        args += ["--task-param", kv]
    return args + ["--task-param", "test_id_fraction=0.1", "--task-param", "ood_fraction=0.1"]


def test_a_damaged_checkpoint_is_one_plain_line_on_resume(run_dir, capsys):
    _truncate_weights(run_dir, 60)  # the latest: the CLI, the resume and the new run all meet it
    assert main(_resume_args(run_dir) + ["--steps", "80", "--no-report"]) == 0
    captured = capsys.readouterr()
    assert "resumed from step 40" in captured.out
    weights = run_dir / "checkpoints" / "step_0000060.safetensors"
    assert captured.err == (
        f"warning: checkpoint file {weights} does not match its SHA-256 (truncated or corrupt); "
        "skipping step 60 (it is left out of run.steps)\n"
    )


def test_resuming_a_finished_run_does_nothing(run_dir, capsys):
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    assert main(_resume_args(run_dir)) == 0
    printed = capsys.readouterr().out
    assert "already finished at step 60" in printed and "grok_step" not in printed
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before


def test_a_resumed_run_says_where_it_resumed(run_dir, tiny_composition, capsys):
    from grok_circuits.runs.run import CheckpointStore

    CheckpointStore(run_dir).truncate_after(40)  # as if stopped before checkpointing step 60
    run = train(tiny_composition, None, out=run_dir, resume=True, progress=False)
    assert "resumed from step 40" in capsys.readouterr().out
    assert run.steps == [0, 20, 40, 60]
