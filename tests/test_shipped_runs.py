"""The small pretrained runs in data/runs, which the tutorials load.

Each must regenerate exactly the task data it was trained on (its stored fingerprint), and its
checkpoints must be the weights behind its recorded metrics.
"""

from collections import Counter
from pathlib import Path

import pytest
import torch

from grok_circuits import accuracy, fourier_spectrum, load_run, make_task, over_checkpoints
from grok_circuits.training.loop import evaluate

RUNS = Path(__file__).resolve().parent.parent / "data" / "runs"
NAMES = (
    sorted(p.name for p in RUNS.iterdir() if (p / "task.json").is_file()) if RUNS.is_dir() else []
)


#: The runs the tutorials load; others (mixed_wide: one checkpoint, for the edge-level reuse
#: benchmark) keep fewer checkpoints.
TUTORIAL_RUNS = {"composition", "comparison", "mixed", "modular"}


def test_the_tutorial_runs_are_shipped():
    assert TUTORIAL_RUNS <= set(NAMES)


@pytest.mark.parametrize("name", NAMES)
def test_stored_configs_regenerate_the_same_task(name):
    run = load_run(RUNS / name)
    assert run.task_fingerprint is not None
    assert run.task.fingerprint() == run.task_fingerprint  # Run.task also raises on a mismatch


def _assert_reproduces_metrics(run, step):
    recorded = next(row for row in run.metrics if row["step"] == step)
    measured = evaluate(run.model(step, device="cpu"), run.task.probes(run.train_cfg.eval_size))
    # A run trained before a derived probe existed has no record of it; every other probe must
    # be recorded.
    derived = {f"{p}_{m}" for p in run.task.derived_probes for m in ("acc", "loss")}
    assert set(measured) - set(recorded) <= derived
    for key, value in measured.items():
        if key not in recorded:
            continue
        torch.testing.assert_close(value, recorded[key], rtol=1e-4, atol=1e-4, msg=key)


@pytest.mark.parametrize("name", NAMES)
def test_last_checkpoint_reproduces_the_recorded_metrics(name):
    run = load_run(RUNS / name)
    _assert_reproduces_metrics(run, run.steps[-1])


@pytest.mark.parametrize("name", [n for n in NAMES if n in TUTORIAL_RUNS])
def test_shipped_runs_keep_the_stages_the_tutorials_need(name):
    run = load_run(RUNS / name)
    assert run.steps[0] == 0 and run.steps[-1] == run.last_step
    if run.task_name == "composition":
        assert run.saturation_step is not None and run.grok_step is not None
        assert run.nearest_step(run.saturation_step) < run.nearest_step(run.grok_step)


@pytest.mark.parametrize("name", ["composition", "modular"])
def test_shipped_runs_grok_memorizing_first(name):
    # The tutorials compare a memorizing with a generalizing checkpoint: when training accuracy
    # first holds 0.95, ID accuracy must still be low, and it must take at least 3x as many
    # steps again for ID to reach 0.95 (docs/science.md: the grokking measure).
    g = load_run(RUNS / name).grokking
    assert g["id_at_memorization"] <= 0.2, g
    assert g["grokking_delay"] >= 3.0, g


def _label_baseline(task) -> float:
    """ID accuracy of answering each comparison with the label its attribute (the prompt's first
    token) most often has in training: what a model that knows only the labels' frequencies
    scores, counted one example at a time."""
    train, test = task.splits["train_inferred"], task.splits["test_id"]
    counts: dict[int, Counter] = {}
    for first, answer in zip(train.tokens[:, 0].tolist(), train.answers.tolist()):
        counts.setdefault(first, Counter())[answer] += 1
    right = 0
    for first, answer in zip(test.tokens[:, 0].tolist(), test.answers.tolist()):
        top = max(counts[first].values())
        guess = min(a for a, n in counts[first].items() if n == top)
        right += guess == answer
    return right / len(test)


def test_shipped_comparison_run_groks_memorizing_first():
    # A comparison's answer is one of its attribute's three labels, so a memorizing model scores
    # the labels' frequencies (about 0.4) on ID: ID at memorization is judged above that baseline,
    # as a share of what it leaves (docs/science.md: the grokking measure), against the same 0.2.
    run = load_run(RUNS / "comparison")
    g = run.grokking
    baseline = _label_baseline(run.task)
    assert 0.3 < baseline < 0.5, baseline
    assert run.id_baseline == pytest.approx(baseline)  # what `report` prints beside it
    assert (g["id_at_memorization"] - baseline) / (1 - baseline) <= 0.2, (g, baseline)
    assert g["grokking_delay"] >= 3.0, g


def test_shipped_comparison_run_is_the_tutorial_preset_and_generalizes_ood():
    # Tutorial 4 tells the story of this run: the preset's task, ID and OOD both generalized.
    run = load_run(RUNS / "comparison")
    assert run.task.params == make_task("comparison", preset="tutorial").params
    last = run.metrics[-1]
    assert last["test_id_acc"] >= 0.95 and last["test_ood_acc"] >= 0.9


def test_shipped_composition_run_keeps_a_generalizing_checkpoint():
    # Tutorials 2 and 3 trace the generalizing stage: the first checkpoint at or after the step
    # where ID accuracy first reached 95%. It must be there, be generalizing by the run's own
    # metrics, and hold the weights those metrics were measured on.
    run = load_run(RUNS / "composition")
    kept = [s for s in run.steps if s >= run.grok_step]
    assert kept, f"no checkpoint at or after the grok step {run.grok_step}: {run.steps}"
    step = kept[0]
    row = next(row for row in run.metrics if row["step"] == step)
    assert row["test_id_acc"] >= 0.95
    _assert_reproduces_metrics(run, step)


def test_shipped_modular_run_is_the_tutorial_preset_and_groks():
    # Tutorial 6 compares its memorizing and generalizing checkpoints.
    run = load_run(RUNS / "modular")
    assert run.task.params == make_task("modular", preset="tutorial").params
    assert run.saturation_step is not None and run.grok_step is not None
    memorizing = min(s for s in run.steps if s >= run.saturation_step)
    generalizing = min(s for s in run.steps if s >= run.grok_step)
    assert memorizing < generalizing
    last = run.metrics[-1]
    assert last["train_inferred_acc"] >= 0.99 and last["test_id_acc"] >= 0.95
    # the known mechanism (Nanda et al. 2023): the embedding's Fourier spectrum sharpens
    mem = fourier_spectrum(run.model(memorizing, device="cpu"), run.task)
    gen = fourier_spectrum(run.model(generalizing, device="cpu"), run.task)
    assert gen.gini > mem.gini and len(gen.key_frequencies) < len(mem.key_frequencies)


def test_hop_probes_evaluate_on_the_shipped_composition_run_after_the_fact():
    # Tutorial 7: the run was trained before the mixed-hop probes existed, so they are
    # evaluated on its checkpoints afterwards. accuracy() gives what training recorded for a
    # probe it had (test_ood is smaller than eval_size, so the record covers the whole split).
    run = load_run(RUNS / "composition")
    assert "test_ood_hop2_acc" not in run.metrics[-1]
    probes = ("test_ood", "test_ood_hop1", "test_ood_hop2")
    over = over_checkpoints(
        run,
        lambda m: {p: accuracy(m, run.task.splits[p]) for p in probes},
        steps=[run.steps[-1]],
        progress=False,
    )
    last = over.results[-1]
    assert len(run.task.splits["test_ood"]) < run.train_cfg.eval_size
    torch.testing.assert_close(last["test_ood"], run.metrics[-1]["test_ood_acc"])
    # the story tutorial 7 tells: a query whose first hop is OOD is answered more often than
    # one whose second hop is
    assert last["test_ood_hop1"] > last["test_ood_hop2"]


def test_shipped_loops_run_is_the_depth_benchmarks_first_seed():
    # Tutorial 11 reads data/recurrent_depth/depth.csv (benchmarks/recurrent_depth.py) beside
    # the shipped recurrent-depth run, which is that benchmark's seed-0 trial: at its last
    # checkpoint, the accuracy of every hop count at a few inference counts is the table's.
    import pandas as pd

    run = load_run(RUNS / "loops")
    assert run.train_cfg.core == 1 and tuple(run.train_cfg.iterations) == (2, 6)
    table = pd.read_csv(RUNS.parent / "recurrent_depth" / "depth.csv")
    mine = table[table.seed == run.train_cfg.seed]
    for n in (1, 4, int(mine.iterations.max())):
        model = run.model(run.steps[-1], iterations=n, device="cpu")
        for row in mine[mine.iterations == n].itertuples():
            measured = accuracy(model, run.task.splits[row.split])
            assert measured == pytest.approx(row.acc, abs=1e-6), (n, row.split)


def test_shipped_loops_run_reproduces_its_halting_rows():
    # data/recurrent_depth/halting.csv (adaptive halting at several KL thresholds), seed 0,
    # from the shipped run's last checkpoint: tutorial 11 shows both.
    import pandas as pd

    from grok_circuits import adaptive_halting

    run = load_run(RUNS / "loops")
    table = pd.read_csv(RUNS.parent / "recurrent_depth" / "halting.csv")
    mine = table[(table.seed == run.train_cfg.seed) & (table.kind == "id")]
    model = run.model(run.steps[-1], device="cpu")
    for split in ("test_id", "test_id_3hop"):
        halting = adaptive_halting(model, run.task.splits[split], max_iterations=12)
        rows = mine[mine.split == split]
        assert len(rows) == 5
        for row in rows.itertuples():
            h = halting.with_threshold(kl_threshold=row.kl_threshold)
            assert h.accuracy == pytest.approx(row.acc, abs=1e-6), (split, row.kl_threshold)
            assert h.mean_iterations == pytest.approx(row.mean_iterations, abs=1e-6)
        assert halting.best_fixed[1] == pytest.approx(rows.best_fixed_acc.iloc[0], abs=1e-6)
