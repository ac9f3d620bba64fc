import json
import os

import pytest
import torch

from grok_circuits import backend, load_run
from grok_circuits.cli import main
from grok_circuits.runs.run import Run, first_token_baseline


def _run_with_metrics(tmp_path, accs):
    from grok_circuits.model import model_config
    from grok_circuits.tasks import make_task
    from grok_circuits.training.loop import TrainConfig

    task = make_task(
        "composition",
        preset=None,
        n_entities=10,
        n_relations=3,
        out_degree=2,
        phi=1.0,
        test_id_fraction=0.2,
        ood_fraction=0.2,
    )
    rows = [
        {"step": s, "train_inferred_acc": tr, "test_id_acc": i, "test_ood_acc": 0.0}
        for s, tr, i in accs
    ]
    return Run(
        tmp_path,
        "composition",
        task.params.to_dict(),
        model_config(task, "tiny"),
        TrainConfig(),
        rows,
    )


def test_saturation_and_grok_steps(tmp_path):
    run = _run_with_metrics(
        tmp_path,
        [(0, 0.1, 0.0), (100, 0.99, 0.2), (200, 1.0, 0.94), (300, 1.0, 0.95), (400, 1.0, 0.99)],
    )
    assert run.saturation_step == 100
    assert run.grok_step == 300
    never = _run_with_metrics(tmp_path, [(0, 0.1, 0.0), (100, 0.98, 0.5)])
    assert never.saturation_step is None and never.grok_step is None


def test_the_memorizing_model_is_found_under_a_noisy_plateau(tmp_path):
    """Training accuracy rises to 0.96 at step 200 and then wavers around 0.99 (as a 1,000
    example probe of a 99%-memorized set does): the first 99% (step 500) falls where ID already
    stands at 0.7; the memorizing model is step 200, ID 0.1, and ID 0.95 at 1000 is 5x later."""
    run = _run_with_metrics(
        tmp_path,
        [
            (0, 0.01, 0.0),
            (100, 0.5, 0.02),
            (200, 0.96, 0.1),
            (300, 0.985, 0.3),
            (400, 0.989, 0.5),
            (500, 0.991, 0.7),
            (600, 0.988, 0.9),
            (1000, 0.993, 0.97),
        ],
    )
    assert run.saturation_step == 500  # unchanged: the first 99%
    assert run.grokking == {
        "memorization_step": 200,
        "id_at_memorization": 0.1,
        "grok_step": 1000,
        "grokking_delay": 5.0,
    }
    assert (run.memorization_step, run.grokking_delay) == (200, 5.0)
    summary = run.summary()
    assert summary["memorization_step"] == 200 and summary["grokking_delay"] == 5.0
    assert summary["id_at_memorization"] == 0.1 and summary["saturation_step"] == 500


def test_a_crossing_that_does_not_hold_is_not_memorization():
    from grok_circuits.runs.run import grokking, memorization_step

    def rows(train, ids=None):
        ids = ids or [0.0] * len(train)
        return [
            {"step": 100 * i, "train_inferred_acc": t, "test_id_acc": d}
            for i, (t, d) in enumerate(zip(train, ids))
        ]

    # a spike to 0.96 at step 100 drops back; the held crossing is step 300
    assert memorization_step(rows([0.1, 0.96, 0.7, 0.97, 0.98])) == 300
    # held for one evaluation only, the spike counts
    assert memorization_step(rows([0.1, 0.96, 0.7, 0.97, 0.98]), hold=1) == 100
    # a crossing at the last evaluation counts (a run still training names it)
    assert memorization_step(rows([0.1, 0.5, 0.96])) == 200
    # never, and a threshold of its own
    assert memorization_step(rows([0.1, 0.94, 0.949])) is None
    assert memorization_step(rows([0.1, 0.94, 0.949]), threshold=0.9) == 100
    with pytest.raises(ValueError, match="hold must be >= 1"):
        memorization_step(rows([0.1]), hold=0)
    probes = {"train": "train_inferred", "id": "test_id"}
    # ID first: generalized before memorizing, a delay below 1
    early = grokking(rows([0.1, 0.5, 0.9, 0.97, 0.99], [0.0, 0.96, 0.97, 0.98, 0.99]), probes)
    assert (early["memorization_step"], early["grok_step"]) == (300, 100)
    assert early["grokking_delay"] == pytest.approx(1 / 3)
    # memorized, never grokked: no delay
    late = grokking(rows([0.1, 0.97, 0.98], [0.0, 0.1, 0.2]), probes)
    assert late == {
        "memorization_step": 100,
        "id_at_memorization": 0.1,
        "grok_step": None,
        "grokking_delay": None,
    }
    # memorized at step 0: the ratio is undefined
    assert grokking(rows([0.97, 0.98], [0.96, 0.97]), probes)["grokking_delay"] is None


def test_the_measure_on_the_shipped_phi_law_curves():
    """The tutorial composition preset at phi 7.2, seed 0 (data/phi_law_curves.csv): training
    accuracy is 0.957 at step 300 (ID 0.1378) and wavers between 0.969 and 0.988 until its first
    0.99 at step 1,200, where ID is already 0.8067; ID first reaches 0.95 at step 2,000."""
    import csv
    from pathlib import Path

    from grok_circuits.runs.run import grokking, stage_steps

    path = Path(__file__).resolve().parents[2] / "data" / "phi_law_curves.csv"
    rows = [
        {"step": int(r["step"]), "train_acc": float(r["train_acc"]), "id_acc": float(r["id_acc"])}
        for r in csv.DictReader(path.open())
        if (r["experiment"], r["phi"], r["seed"]) == ("phi", "7.2", "0")
    ]
    probes = {"train": "train", "id": "id"}
    assert stage_steps(rows, probes)["saturation"] == 1200
    assert grokking(rows, probes) == {
        "memorization_step": 300,
        "id_at_memorization": 0.1378,
        "grok_step": 2000,
        "grokking_delay": pytest.approx(2000 / 300),
    }


def test_key_steps_keep_the_stages(tmp_path, monkeypatch):
    from grok_circuits.runs.run import key_steps

    run = _run_with_metrics(tmp_path, [(0, 0.1, 0.0), (100, 0.99, 0.2), (300, 1.0, 0.95)])
    steps = [0, 10, 20, 40, 80, 100, 200, 300, 1000, 3000, 10000]
    monkeypatch.setattr(type(run), "steps", property(lambda self: steps))
    picked = key_steps(run, 5)
    assert {0, 100, 300, 10000} <= set(picked) and len(picked) == 5
    assert key_steps(run, 20) == steps


def test_load_run_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="not a grok_circuits run"):
        load_run(tmp_path)


def test_cli_train_then_report(tmp_path, capsys):
    out = tmp_path / "run"
    args = [
        "train",
        "composition",
        "--out",
        str(out),
        "--model-size",
        "tiny",
        "--steps",
        "40",
        "--eval-every",
        "20",
        "--batch-size",
        "64",
        "--device",
        "cpu",
        "--no-progress",
        "--seed",
        "1",
    ]
    for kv in (
        "n_entities=30",
        "n_relations=6",
        "out_degree=3",
        "phi=2.0",
        "test_id_fraction=0.1",
        "ood_fraction=0.1",
    ):
        args += ["--task-param", kv]
    assert main(args) == 0
    run = load_run(out)
    assert run.task_params["n_entities"] == 30 and run.task_params["seed"] == 1
    assert run.train_cfg.seed == 1 and run.last_step == 40
    assert main(["report", str(out), "--png", str(tmp_path / "c.png")]) == 0
    printed = capsys.readouterr().out
    assert "grok_step" in printed and "saturation_step" in printed
    for key in ("memorization_step", "id_at_memorization", "grokking_delay"):
        assert key in printed
    assert (tmp_path / "c.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert main(["report", str(out), "--json"]) == 0
    summary = json.loads(capsys.readouterr().out.split("\n  curves")[0])
    assert summary["steps"] == 40
    # training into the same folder again needs --resume; resuming extends the run
    assert main(args) == 2
    assert "--resume" in capsys.readouterr().err
    assert main(args[:7] + ["60"] + args[8:] + ["--resume"]) == 0
    assert load_run(out).last_step == 60
    assert main(["export", str(out), str(tmp_path / "small"), "--steps", "0", "60"]) == 0
    assert load_run(tmp_path / "small").steps == [0, 60]


def test_cli_bad_input_is_a_clear_error(tmp_path, capsys):
    assert main(["train", "composition", "--out", str(tmp_path / "r"), "--phi", "99"]) == 2
    assert "phi <=" in capsys.readouterr().err
    assert main(["report", str(tmp_path)]) == 2
    assert "not a grok_circuits run" in capsys.readouterr().err


def test_run_model_loads_the_checkpointed_weights(tiny_composition, tmp_path):
    from grok_circuits import train
    from tests.helpers import tiny_train_config

    run = train(
        tiny_composition, tiny_train_config(max_steps=40), out=tmp_path / "r", progress=False
    )
    with pytest.raises(ValueError, match="nearest_step"):
        run.model(33)
    assert run.nearest_step(33) == 40
    m0, m40 = run.model(0), run.model(40)
    w0 = dict(backend.named_parameters(m0))["embed.W_E"]
    assert not torch.equal(w0, dict(backend.named_parameters(m40))["embed.W_E"])
    from grok_circuits.model import build_model

    torch.testing.assert_close(
        w0, dict(backend.named_parameters(build_model(run.model_cfg, seed=0)))["embed.W_E"]
    )


def test_export_keeps_chosen_weights_only(tiny_composition, tmp_path):
    from grok_circuits import train
    from grok_circuits.runs.run import export_run
    from tests.helpers import tiny_train_config

    run = train(
        tiny_composition, tiny_train_config(max_steps=40), out=tmp_path / "r", progress=False
    )
    before = os.umask(0o022)
    try:
        small = export_run(run, tmp_path / "small", steps=[0, 40])
    finally:
        os.umask(before)
    assert small.steps == [0, 40] and small.metrics == run.metrics
    # "for sharing": every file readable by others, as any file written under umask 022
    modes = {p.name: oct(p.stat().st_mode & 0o777) for p in small.path.rglob("*") if p.is_file()}
    assert set(modes.values()) == {"0o644"}, modes
    assert not list((tmp_path / "small" / "checkpoints").glob("*.state.pt"))
    for a, b in zip(small.model(40).parameters(), run.model(40).parameters()):
        assert torch.equal(a, b)
    with pytest.raises(ValueError, match="not checkpointed"):
        export_run(run, tmp_path / "other", steps=[33])
    with pytest.raises(FileExistsError):
        export_run(run, tmp_path / "small")


def test_cli_analyze_writes_the_circuit_of_a_comparison_run(tiny_comparison, tmp_path, capsys):
    from grok_circuits import train
    from tests.helpers import tiny_train_config

    train(tiny_comparison, tiny_train_config(max_steps=20), out=tmp_path / "r", progress=False)
    assert main(["analyze", str(tmp_path / "r"), "--n-examples", "20"]) == 0
    printed = capsys.readouterr().out
    assert "memorizing (train >= 99%) checkpoint None" in printed
    assert "the run never reached its memorizing stage" in printed
    assert (tmp_path / "r" / "analysis" / "circuit.png").read_bytes()[:4] == b"\x89PNG"


def test_cli_trains_the_mixed_task(tmp_path, capsys):
    args = [
        "train",
        "mixed",
        "--out",
        str(tmp_path / "m"),
        "--model-size",
        "tiny",
        "--steps",
        "20",
        "--eval-every",
        "10",
        "--device",
        "cpu",
        "--no-progress",
        "--no-report",
    ]
    for kv in (
        "n_entities=20",
        "n_relations=4",
        "out_degree=2",
        "composition_phi=1.0",
        "composition_test_id_fraction=0.1",
        "composition_ood_fraction=0.2",
        "n_attributes=2",
        "n_values=3",
        "comparison_phi=1.0",
        "comparison_test_id_fraction=0.1",
    ):
        args += ["--task-param", kv]
    assert main(args) == 0
    assert "mixed (tutorial):" in capsys.readouterr().out
    run = load_run(tmp_path / "m")
    assert "comparison.test_ood_acc" in run.metrics[-1] and run.last_step == 20


def test_run_task_is_checked_against_its_fingerprint(tiny_composition, tmp_path):
    from grok_circuits import train
    from tests.helpers import tiny_train_config

    train(tiny_composition, tiny_train_config(max_steps=20), out=tmp_path / "r", progress=False)
    stored = json.loads((tmp_path / "r" / "task.json").read_text())
    assert stored["fingerprint"] == tiny_composition.fingerprint()
    assert load_run(tmp_path / "r").task.fingerprint() == stored["fingerprint"]
    stored["fingerprint"] = "0" * 64  # as if the generator had changed since training
    (tmp_path / "r" / "task.json").write_text(json.dumps(stored))
    with pytest.raises(ValueError, match="fingerprint does not match"):
        _ = load_run(tmp_path / "r").task


def test_fingerprint_tells_tasks_apart(tiny_composition):
    from grok_circuits.tasks import make_task

    same = make_task("composition", preset=None, **tiny_composition.params.to_dict())
    assert same.fingerprint() == tiny_composition.fingerprint()
    other = {**tiny_composition.params.to_dict(), "seed": 1}
    assert make_task("composition", preset=None, **other).fingerprint() != same.fingerprint()


TINY_TASK_ARGS = [
    "--task-param",
    "n_entities=30",
    "--task-param",
    "n_relations=6",
    "--task-param",
    "out_degree=3",
    "--task-param",
    "phi=2.0",
]


@pytest.mark.parametrize(
    "extra, names",
    [
        (["--task-param", "n_entities=abc"], ["n_entities", "must be int", "'abc'"]),
        (["--task-param", "phi=true"], ["phi", "must be float"]),
        (["--task-param", "n_entities"], ["KEY=VALUE"]),
        (["--model-param", "n_layer=2"], ["n_layer", "did you mean ['n_layers']", "d_model"]),
        (["--model-param", "n_layers=0"], ["n_layers must be an integer >= 1, got 0"]),
        (["--model-param", "n_heads=3"], ["n_heads=3 must divide d_model=32", "d_head"]),
    ],
)
def test_cli_bad_parameters_are_one_line_errors(tmp_path, capsys, extra, names):
    args = ["train", "composition", "--out", str(tmp_path / "r"), "--model-size", "tiny"]
    assert main(args + TINY_TASK_ARGS + extra + ["--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1
    for name in names:
        assert name in err
    assert not (tmp_path / "r").exists()


@pytest.mark.skipif(torch.cuda.is_available(), reason="checks the machine without CUDA")
def test_cuda_without_cuda_is_a_one_line_error(tmp_path, capsys):
    from grok_circuits.model import resolve_device

    with pytest.raises(ValueError, match="CUDA is not available.*--device cpu"):
        resolve_device("cuda")
    args = ["train", "composition", "--out", str(tmp_path / "r"), "--device", "cuda"]
    assert main(args + TINY_TASK_ARGS + ["--model-size", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1 and "CUDA" in err
    assert not (tmp_path / "r").exists()


def test_resolve_device_names_a_bad_device():
    from grok_circuits.model import resolve_device

    assert resolve_device("cpu") == torch.device("cpu")
    with pytest.raises(ValueError, match="unknown device 'gpu'"):
        resolve_device("gpu")


def test_an_unknown_device_is_one_short_line(tmp_path, capsys):
    args = ["train", "composition", "--out", str(tmp_path / "r"), "--device", "foo"]
    assert main(args + TINY_TASK_ARGS + ["--model-size", "tiny", "--no-progress"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("error: unknown device 'foo'") and err.count("\n") == 1
    assert "use auto, cpu, cuda" in err
    assert "mkldnn" not in err  # not torch's list of every device type it was built to know
    assert not (tmp_path / "r").exists()


def test_figures_go_to_the_run_only_when_it_is_writable_and_not_shipped(tmp_path, monkeypatch):
    from grok_circuits import cli

    monkeypatch.chdir(tmp_path)
    mine = tmp_path / "runs" / "mine"
    mine.mkdir(parents=True)
    assert cli.figures_dir(mine, None) == mine.resolve()
    assert cli.figures_dir(mine, None, "analysis") == mine.resolve() / "analysis"
    assert cli.figures_dir(mine, tmp_path / "asked") == tmp_path / "asked"
    monkeypatch.setattr(cli, "SHIPPED_DATA", tmp_path / "runs")  # as if mine were shipped
    assert cli.figures_dir(mine, None, "analysis") == tmp_path / "analysis"
    monkeypatch.setattr(cli, "SHIPPED_DATA", tmp_path / "elsewhere")
    monkeypatch.setattr(cli.os, "access", lambda path, mode: False)  # a read-only run folder
    assert cli.figures_dir(mine, None) == tmp_path


def test_report_on_a_shipped_run_writes_into_the_current_directory(tmp_path, monkeypatch):
    from grok_circuits.cli import SHIPPED_DATA

    shipped = SHIPPED_DATA / "runs" / "composition"
    before = sorted(p.name for p in shipped.iterdir())
    monkeypatch.chdir(tmp_path)
    assert main(["report", str(shipped)]) == 0
    assert (tmp_path / "curves.png").read_bytes()[:4] == b"\x89PNG"
    assert sorted(p.name for p in shipped.iterdir()) == before


def test_what_report_and_analyze_write_beside_a_shipped_run_is_ignored_by_git(monkeypatch):
    """Run from the repository's root on a shipped run, report and analyze write curves.png and
    analysis/ there (never into data/): git must not offer them for a commit."""
    import subprocess

    from grok_circuits import cli

    root = cli.SHIPPED_DATA.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    monkeypatch.chdir(root)
    shipped = cli.SHIPPED_DATA / "runs" / "composition"
    written = [
        cli.figures_dir(shipped, None) / "curves.png",
        cli.figures_dir(shipped, None, "analysis") / "circuit.png",
    ]
    assert [p.parent.resolve() for p in written] == [root.resolve(), (root / "analysis").resolve()]
    names = [str(p.relative_to(root.resolve())) for p in written]
    ignored = subprocess.run(["git", "check-ignore", *names], capture_output=True, text=True)
    assert ignored.stdout.split() == names


def test_what_report_and_analyze_write_from_a_subfolder_of_the_repository_is_ignored(monkeypatch):
    """From tutorials/ (where a notebook's terminal opens) they write there: ignored too."""
    import subprocess

    from grok_circuits import cli

    root = cli.SHIPPED_DATA.parent
    if not (root / ".git").exists():
        pytest.skip("not a git checkout")
    monkeypatch.chdir(root / "tutorials")
    shipped = cli.SHIPPED_DATA / "runs" / "composition"
    written = [
        cli.figures_dir(shipped, None) / "curves.png",
        cli.figures_dir(shipped, None, "analysis") / "circuit.png",
        cli.figures_dir(shipped, None, "analysis") / "fourier_last.png",
    ]
    names = [str(p.relative_to(root.resolve())) for p in written]
    assert names[0] == "tutorials/curves.png"
    ignored = subprocess.run(
        ["git", "check-ignore", *names], cwd=root, capture_output=True, text=True
    )
    assert ignored.stdout.split() == names


def test_the_license_pyproject_declares_is_there():
    from grok_circuits.cli import SHIPPED_DATA

    root = SHIPPED_DATA.parent
    assert 'license = { text = "MIT" }' in (root / "pyproject.toml").read_text()
    text = (root / "LICENSE").read_text()
    assert text.startswith("MIT License\n\nCopyright (c) ") and "grok_circuits authors" in text
    assert 'THE SOFTWARE IS PROVIDED "AS IS", WITHOUT WARRANTY OF ANY KIND' in text


@pytest.fixture(scope="module")
def finished_tiny(tiny_composition, tmp_path_factory):
    """A tiny 20-step run of ``tiny_composition`` (copied by each test)."""
    from grok_circuits import train
    from tests.helpers import tiny_train_config

    out = tmp_path_factory.mktemp("finished") / "run"
    train(tiny_composition, tiny_train_config(max_steps=20), out=out, progress=False)
    return out


def _resume_args(run_dir) -> list[str]:
    """``train --resume`` of :func:`finished_tiny`: its task, spelled out."""
    from tests.conftest import TINY_COMPOSITION

    args = ["train", "composition", "--out", str(run_dir), "--resume", "--no-progress"]
    for key, value in TINY_COMPOSITION.items():
        args += ["--task-param", f"{key}={value}"]
    return args + ["--device", "cpu", "--no-report"]


def test_resume_refuses_the_flags_it_cannot_change(finished_tiny, tmp_path, capsys):
    import shutil

    run_dir = shutil.copytree(finished_tiny, tmp_path / "run")
    before = {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()}
    extra = ["--lr", "0.01", "--model-size", "paper", "--model-param", "n_layers=4"]
    assert main(_resume_args(run_dir) + extra + ["--steps", "40"]) == 2
    err = capsys.readouterr().err
    assert err.startswith(f"error: cannot resume {run_dir} with ") and err.count("\n") == 1
    for said in ("--lr 0.01 (the run has lr=0.001)", "--model-size paper (the run has "
                 "model_size='tiny')", "--model-param n_layers=4 (the run has n_layers=2)",
                 "only --steps, --stop-id-acc"):  # fmt: skip
        assert said in err
    assert {p: p.read_bytes() for p in run_dir.rglob("*") if p.is_file()} == before
    # the values the run already has are no change
    same = ["--lr", "0.001", "--model-size", "tiny", "--model-param", "n_layers=2"]
    assert main(_resume_args(run_dir) + same + ["--steps", "40"]) == 0
    assert load_run(run_dir).last_step == 40


def test_resume_into_a_new_folder_trains_the_preset(tmp_path, capsys):
    from grok_circuits.training.presets import train_config

    out = tmp_path / "new"
    args = _resume_args(out) + ["--model-size", "tiny", "--steps", "20", "--eval-every", "10"]
    assert main(args + ["--batch-size", "64"]) == 0
    run = load_run(out)
    assert run.last_step == 20 and run.train_cfg.lr == train_config("composition", "tutorial").lr


def test_no_schedule_trains_the_constant_recipe_and_a_resume_cannot_drop_it(tmp_path, capsys):
    from grok_circuits.training.presets import train_config

    preset = train_config("composition", "tutorial")
    assert preset.lr_decay is not None and preset.weight_decay_after is not None
    short = ["--model-size", "tiny", "--steps", "20", "--eval-every", "10", "--batch-size", "64"]
    scheduled = tmp_path / "scheduled"
    assert main(_resume_args(scheduled) + short) == 0
    assert load_run(scheduled).train_cfg.lr_decay == preset.lr_decay
    capsys.readouterr()
    assert main(_resume_args(scheduled) + ["--no-schedule", "--steps", "30"]) == 2
    _one_error_line(capsys, f"--no-schedule (the run has lr_decay={preset.lr_decay!r})")
    assert load_run(scheduled).last_step == 20

    start, end, _ = preset.lr_decay  # another anneal than the run's
    other = [str(start + 100), str(end + 100), "0.5"]
    assert main(_resume_args(scheduled) + ["--lr-decay", *other]) == 2
    _one_error_line(capsys, f"--lr-decay {' '.join(other)} (the run has lr_decay=")

    constant = tmp_path / "constant"
    assert main(_resume_args(constant) + short + ["--no-schedule"]) == 0
    cfg = load_run(constant).train_cfg
    assert cfg.lr_decay is None and cfg.weight_decay_after is None
    assert (cfg.lr, cfg.weight_decay) == (preset.lr, preset.weight_decay)

    own = tmp_path / "own"
    flags = ["--lr-decay", "5", "15", "0.5", "--weight-decay-after", "10", "2"]
    assert main(_resume_args(own) + short + flags) == 0
    cfg = load_run(own).train_cfg
    assert (cfg.lr_decay, cfg.weight_decay_after) == ((5, 15, 0.5), (10, 2.0))


@pytest.mark.parametrize(
    "flags, said",
    [
        (["--lr-decay", "900.5", "1400", "0.2"], "--lr-decay 900.5 1400 0.2: expected STEP STEP"),
        (["--lr-decay", "1400", "900", "0.2"], "TrainConfig.lr_decay must be None or (start, end"),
        (["--weight-decay-after", "300", "x"], "--weight-decay-after 300 x: expected STEP FACTOR"),
    ],
)
def test_bad_schedule_flags_are_one_line(tmp_path, capsys, flags, said):
    assert (
        main(_resume_args(tmp_path / "r") + ["--model-size", "tiny", "--steps", "5"] + flags) == 2
    )
    _one_error_line(capsys, said)
    assert not (tmp_path / "r").exists()


def _one_error_line(capsys, *said: str) -> str:
    err = capsys.readouterr().err
    assert err.startswith("error: ") and err.count("\n") == 1, err
    assert "Errno" not in err
    for text in said:
        assert text in err, err
    return err


def _train_into(out) -> list[str]:
    return ["train", "composition", "--out", str(out), "--model-size", "tiny", "--no-progress"]


def test_a_file_in_the_way_of_out_is_one_error_line(tmp_path, capsys):
    (tmp_path / "notes").write_text("a file, not a folder")
    assert main(_train_into(tmp_path / "notes") + TINY_TASK_ARGS) == 2
    _one_error_line(capsys, f"{tmp_path / 'notes'} is a file, not a folder")
    assert main(_train_into(tmp_path / "notes" / "run") + TINY_TASK_ARGS) == 2
    _one_error_line(capsys, f"{tmp_path / 'notes'}, which is a file, not a folder")
    assert (tmp_path / "notes").read_text() == "a file, not a folder"


def _deny_writes_under(monkeypatch, folder):
    """Act as the OS does for a user who may not write in ``folder`` (the tests run as root,
    for whom a read-only folder is still writable): creating a folder or a file there fails
    with EACCES."""
    import errno
    import pathlib

    real_mkdir, real_open = pathlib.Path.mkdir, os.open

    def mkdir(self, *args, **kwargs):
        if self.is_relative_to(folder) and not self.exists():
            raise PermissionError(errno.EACCES, "Permission denied", str(self))
        return real_mkdir(self, *args, **kwargs)

    def open_(path, flags, *args, **kwargs):
        if flags & os.O_CREAT and pathlib.Path(path).is_relative_to(folder):
            raise PermissionError(errno.EACCES, "Permission denied", str(path))
        return real_open(path, flags, *args, **kwargs)

    monkeypatch.setattr(pathlib.Path, "mkdir", mkdir)
    monkeypatch.setattr(os, "open", open_)


def test_an_unwritable_out_is_one_error_line(tmp_path, capsys, monkeypatch):
    locked = tmp_path / "locked"
    locked.mkdir()
    _deny_writes_under(monkeypatch, locked)
    # the run folder cannot be made (mkdir), or nothing can be written in it (the atomic writer)
    assert main(_train_into(locked / "run") + TINY_TASK_ARGS) == 2
    _one_error_line(capsys, f"cannot create {locked / 'run'}: permission denied in {locked}")
    assert main(_train_into(locked) + TINY_TASK_ARGS) == 2
    _one_error_line(capsys, f"cannot write into {locked}: permission denied", "choose a folder")
    assert list(locked.iterdir()) == []


def test_a_read_only_out_for_real(tmp_path, capsys):
    locked = tmp_path / "locked"
    locked.mkdir()
    locked.chmod(0o500)
    try:
        if os.access(locked, os.W_OK):
            pytest.skip("this user (root) may write into a read-only folder")
        assert main(_train_into(locked / "run") + TINY_TASK_ARGS) == 2
        _one_error_line(capsys, f"cannot create {locked / 'run'}: permission denied")
    finally:
        locked.chmod(0o700)


def test_bad_paths_of_a_run_are_one_error_line(finished_tiny, tmp_path, capsys, monkeypatch):
    import errno

    from grok_circuits.runs import run as runs_module

    (tmp_path / "notes").write_text("a file")
    assert main(["report", str(finished_tiny), "--out", str(tmp_path / "notes")]) == 2
    _one_error_line(capsys, f"{tmp_path / 'notes'} is a file, not a folder")
    assert main(["export", str(finished_tiny), str(tmp_path / "notes" / "small")]) == 2
    _one_error_line(capsys, f"{tmp_path / 'notes'}, which is a file, not a folder")

    def unreadable(path, *args, **kwargs):  # a checkpoint that another user owns, mode 0600
        raise PermissionError(errno.EACCES, "Permission denied", str(path))

    monkeypatch.setattr(runs_module, "open", unreadable, raising=False)
    assert main(["report", str(finished_tiny), "--out", str(tmp_path / "fig")]) == 2
    weights = finished_tiny / "checkpoints" / "step_0000000.safetensors"
    _one_error_line(capsys, f"cannot open {weights}: permission denied")


def test_a_second_train_of_a_run_being_trained_is_refused(finished_tiny, tmp_path, capsys):
    import shutil
    import subprocess
    import sys

    from grok_circuits.runs.run import LOCK_FILE

    run_dir = shutil.copytree(finished_tiny, tmp_path / "run")
    holder = subprocess.Popen(  # a process that holds the run's lock, as a training run does
        [sys.executable, "-c", "from grok_circuits.io import hold_lock; import sys\n"
         f"with hold_lock({str(run_dir / LOCK_FILE)!r}):\n print('held', flush=True)\n"
         " sys.stdin.read()"],
        stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True,
    )  # fmt: skip
    try:
        assert holder.stdout.readline() == "held\n"
        assert main(_resume_args(run_dir) + ["--steps", "40"]) == 2
        _one_error_line(capsys, f"{run_dir} is being trained by process {holder.pid}")
        assert load_run(run_dir).last_step == 20  # nothing trained twice
    finally:
        holder.communicate("")  # it lets go and exits
    assert not (run_dir / LOCK_FILE).exists()
    # a lock file left by a process that died (killed: it could not remove it) is taken over
    (run_dir / LOCK_FILE).write_text(f"{holder.pid}\n")
    assert main(_resume_args(run_dir) + ["--steps", "40"]) == 0
    assert load_run(run_dir).last_step == 40 and not (run_dir / LOCK_FILE).exists()


def test_first_token_baseline_counts_the_most_common_answer_per_first_token(tiny_composition):
    # Training: first token 5 answers 1, 1, 2 (mode 1); first token 7 answers 4, 3 (a tie: the
    # smaller, 3). ID: (5 -> 1) right, (7 -> 3) right twice, (9 -> 1) wrong: the first token 9
    # never starts a training query. 3 of 4 (1 of 4 had the tie gone to 4).
    import dataclasses

    import numpy as np

    from grok_circuits.tasks.data import make_split

    def split(firsts, answers):
        prompts = np.stack([firsts, np.zeros(len(firsts), dtype=np.int64)], axis=1)
        return make_split(prompts, np.array(answers), answer_pos=1)

    task = dataclasses.replace(
        tiny_composition,
        splits={
            **tiny_composition.splits,
            "train_inferred": split([5, 5, 5, 7, 7], [1, 1, 2, 4, 3]),
            "test_id": split([5, 7, 7, 9], [1, 3, 3, 1]),
        },
    )
    assert task.key_probes["train"] == "train_inferred" and task.key_probes["id"] == "test_id"
    assert first_token_baseline(task) == 0.75
    empty = dataclasses.replace(task, splits={**task.splits, "test_id": split([], [])})
    assert first_token_baseline(empty) is None
