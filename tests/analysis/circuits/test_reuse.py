"""Circuit reuse with planted circuits: overlaps counted by hand, the random baseline against an
exact enumeration, and cross-ablations whose answer is known by construction."""

import itertools
import math

import matplotlib
import numpy as np
import pytest
import torch

import grok_circuits.tasks.mixed  # noqa: F401  (registers "mixed")
from grok_circuits.analysis.circuits.find import Circuit, find_circuit
from grok_circuits.analysis.circuits.reuse import (
    ReuseReport,
    circuit_reuse,
    head_share,
    iou,
    random_like,
)
from grok_circuits.analysis.components import Component, all_components
from grok_circuits.analysis.patching.ablation import accuracy_under_ablation
from grok_circuits.model import build_model, model_config
from grok_circuits.tasks import make_pairs, make_task
from grok_circuits.tasks.mixed import mixed_subtask
from grok_circuits.training.loop import TrainConfig, train
from tests.helpers import TINY_MIXED

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def task():
    return make_task("mixed", preset=None, **TINY_MIXED)


@pytest.fixture(scope="module")
def model(task, tmp_path_factory):
    cfg = TrainConfig(max_steps=100, model_size="tiny", batch_size=64, eval_every=50, device="cpu")
    run = train(task, cfg, out=tmp_path_factory.mktemp("mixed"), progress=False)
    return run.model(device="cpu")


def planted_finder(circuits: dict[str, list[str]]):
    """A circuit method (find_circuit's signature) that returns fixed circuits."""

    def finder(model, task, *, split="train_inferred", **kw) -> Circuit:
        chosen = tuple(
            sorted((Component.parse(c) for c in circuits[task.name]), key=Component.sort_key)
        )
        return Circuit(
            task=task.name,
            method="planted",
            split=split,
            n_examples=0,
            n_layers=model.cfg.n_layers,
            n_heads=model.cfg.n_heads,
            scores={c: float(c in chosen) for c in all_components(model)},
            components=chosen,
            threshold=0.5,
            top_k=None,
            metric="planted",
            positions={},
        )

    return finder


def test_overlaps_counted_by_hand():
    a = [Component(0, 0), Component(0, 1), Component(0)]
    b = [Component(0, 0), Component(1, 0), Component(1, 1), Component(1)]
    assert iou(a, b) == pytest.approx(1 / 6)
    assert head_share(a, b) == pytest.approx(1 / 2)  # 1 shared of the smaller's 2 heads
    assert iou(a, a) == 1.0 and head_share(a, a) == 1.0
    assert math.isnan(iou([], [])) and math.isnan(head_share([Component(0)], b))
    assert iou([], b) == 0.0


def test_random_sets_match_the_head_and_mlp_counts_uniformly(model):
    rng = np.random.default_rng(0)
    target = [Component(0, 1), Component(1, 1), Component(1)]
    counts = dict.fromkeys(all_components(model), 0)
    n = 4000
    for _ in range(n):
        r = random_like(model, target, rng)
        assert len(set(r)) == 3 and sum(c.is_head for c in r) == 2
        for c in r:
            counts[c] += 1
    for c, k in counts.items():  # each head in 2 of 4 draws, each MLP in 1 of 2
        assert k / n == pytest.approx(0.5, abs=0.04), c


def exact_random_overlap(model, a, b):
    """Mean IoU and head share of size-matched random pairs, and P(IoU >= iou(a, b)), by
    enumerating every pair of sets (the slow, exact reference)."""
    heads = [c for c in all_components(model) if c.is_head]
    mlps = [c for c in all_components(model) if not c.is_head]

    def sets_like(s):
        nh = sum(c.is_head for c in s)
        return [
            set(h) | set(m)
            for h in itertools.combinations(heads, nh)
            for m in itertools.combinations(mlps, len(s) - nh)
        ]

    pairs = [(x, y) for x in sets_like(a) for y in sets_like(b)]
    ious = np.array([iou(x, y) for x, y in pairs])
    shares = np.array([head_share(x, y) for x, y in pairs])
    return ious.mean(), shares.mean(), (ious >= iou(a, b) - 1e-12).mean()


def test_random_baseline_matches_exact_enumeration(model, task):
    circuits = {"composition": ["L0H0", "L0H1", "MLP0"], "comparison": ["L0H0", "L1H0", "MLP1"]}
    report = circuit_reuse(
        model, task, method=planted_finder(circuits), n_random=4000, n_random_ablations=2, n_eval=50
    )
    a = [Component.parse(c) for c in circuits["composition"]]
    b = [Component.parse(c) for c in circuits["comparison"]]
    assert report.iou == pytest.approx(1 / 5) and report.head_share == pytest.approx(1 / 2)
    mean_iou, mean_share, p_iou = exact_random_overlap(model, a, b)
    se = 0.5 / math.sqrt(4000)  # both overlaps lie in [0, 1]
    assert report.random_iou.mean().item() == pytest.approx(mean_iou, abs=4 * se)
    assert report.random_head_share.mean().item() == pytest.approx(mean_share, abs=4 * se)
    assert report.p_iou == pytest.approx(p_iou, abs=4 * se)
    frame = report.overlap_frame()
    assert frame.loc["IoU", "observed"] == pytest.approx(0.2)


def test_cross_ablation_known_by_construction(model, task):
    every = [str(c) for c in all_components(model)]
    report = circuit_reuse(
        model,
        task,
        method=planted_finder({"composition": [], "comparison": every}),
        n_random=10,
        n_random_ablations=3,
        n_eval=60,
        seed=1,
    )
    for t in report.tasks:
        clean = report.accuracy["none"][t]
        # ablating nothing, or a random set of size 0, is the clean model
        assert report.accuracy["composition"][t] == clean
        assert torch.equal(report.random_accuracy["composition"][t], torch.full((3,), clean))
        # the only random set the size of the whole model is the whole model
        assert torch.equal(
            report.random_accuracy["comparison"][t],
            torch.full((3,), report.accuracy["comparison"][t]),
        )
        # and the clean accuracy is the model's accuracy on the same examples
        view = mixed_subtask(task, t)
        ev = view.splits["test_id"].sample(60, 1)
        assert clean == accuracy_under_ablation(model, ev, [])
        assert report.p_ablation("composition", t) == 1.0
    table = report.to_frame()
    assert list(table.index) == [
        "none",
        "composition circuit",
        "random, size of composition circuit",
        "comparison circuit",
        "random, size of comparison circuit",
    ]
    assert table.loc["comparison circuit", "size"] == len(every)


def test_ablation_p_value_counted_by_hand():
    report = ReuseReport(
        tasks=("composition", "comparison"),
        circuits={},
        iou=0.5,
        head_share=1.0,
        random_iou=torch.tensor([0.0, 0.5, 1.0, float("nan")], dtype=torch.float64),
        random_head_share=torch.tensor([float("nan")] * 4, dtype=torch.float64),
        accuracy={"composition": {"comparison": 0.5}},
        random_accuracy={"composition": {"comparison": torch.tensor([0.1, 0.5, 0.9])}},
        ablation="mean",
        eval_split="test_id",
        n_eval={},
        seed=0,
    )
    assert report.p_ablation("composition", "comparison") == pytest.approx(2 / 3)
    assert report.p_iou == pytest.approx(2 / 3)  # 0.5 and 1.0 of the three defined values
    assert math.isnan(report.p_head_share)


def test_end_to_end_with_find_circuit(model, task):
    report = circuit_reuse(
        model, task, top_k=3, n_random=200, n_random_ablations=3, n_examples=60, n_eval=60, seed=0
    )
    assert isinstance(report, ReuseReport)
    assert all(len(report.circuits[t]) == 3 for t in report.tasks)
    assert report.circuits["comparison"].swaps == ("e1", "e2", "attr")
    assert 0 <= report.iou <= 1 and 0 <= report.p_iou <= 1
    expected = iou(*(report.circuits[t].components for t in report.tasks))
    assert report.iou == expected
    text = str(report)
    assert "IoU" in text and "random, size of composition circuit" in text
    fig = report.plot()
    assert len(fig.axes) == 3
    plt.close(fig)
    again = circuit_reuse(
        model, task, top_k=3, n_random=200, n_random_ablations=3, n_examples=60, n_eval=60, seed=0
    )
    assert torch.equal(again.random_iou, report.random_iou)
    assert again.accuracy == report.accuracy


def test_needs_the_mixed_task(model, tiny_composition):
    small = build_model(model_config(tiny_composition, "tiny"), seed=0)
    with pytest.raises(ValueError, match="not made of two"):
        circuit_reuse(small, tiny_composition)


def test_the_circuit_method_ablates_as_the_cross_ablation_does(model, task):
    report = circuit_reuse(
        model,
        task,
        method="ablation",
        ablation="resample",
        top_k=2,
        n_examples=40,
        n_random=5,
        n_random_ablations=1,
        n_eval=40,
        seed=2,
    )
    for t in report.tasks:
        alone = find_circuit(
            model,
            mixed_subtask(task, t),
            method="ablation",
            ablation="resample",
            top_k=2,
            n_examples=40,
            seed=2,
        )
        assert report.circuits[t].scores == alone.scores
        assert report.circuits[t].metric == "accuracy lost (resample ablation)"


def test_node_level_only_and_no_option_ignored(model, task):
    with pytest.raises(TypeError, match="level"):
        circuit_reuse(model, task, level="edges")  # edge circuits: edges.reuse.edge_reuse
    with pytest.raises(ValueError, match="method='ablation' takes no option metric="):
        circuit_reuse(model, task, method="ablation", metric="strength")
    with pytest.raises(ValueError, match="unknown circuit method 'acdc'"):
        circuit_reuse(model, task, method="acdc")


def test_pairs_are_checked_once_on_the_way_down(model, task, monkeypatch):
    from grok_circuits.analysis import _inputs

    calls = []
    original = _inputs.check_fits
    monkeypatch.setattr(_inputs, "check_fits", lambda m, p: calls.append(p) or original(m, p))
    a = make_pairs(mixed_subtask(task, "composition"), "h", n_examples=20)
    b = make_pairs(mixed_subtask(task, "composition"), "r2", n_examples=20)
    circuit_reuse(model, a, b, eval_a=a, top_k=2, n_random=5, n_random_ablations=1)
    # once each: a (for its circuit; its clean prompts are the reference), eval_a, b
    assert [id(p) for p in calls] == [id(a), id(a), id(b)]


def test_summary_and_plot_follow_the_result_contract(model, task):
    import json

    circuits = {"composition": ["L0H0", "MLP0"], "comparison": ["L0H0", "L1H0", "MLP1"]}
    report = circuit_reuse(
        model, task, method=planted_finder(circuits), n_random=20, n_random_ablations=2, n_eval=30
    )
    s = report.summary()
    json.dumps(s)
    # counted by hand: {L0H0, MLP0} and {L0H0, L1H0, MLP1} share 1 of 4; 1 of the smaller's 1 head
    assert s["iou"] == pytest.approx(1 / 4) and s["head_share"] == 1.0
    assert (s["size composition"], s["size comparison"]) == (2, 3)
    assert s["accuracy composition"] == report.accuracy["none"]["composition"]
    assert (
        s["accuracy composition without comparison circuit"]
        == (report.accuracy["comparison"]["composition"])
    )
    assert s["p_iou"] == report.p_iou
    fig, ax = plt.subplots()
    with pytest.raises(ValueError, match="takes no ax"):
        report.plot(ax)
    plt.close(fig)
    fig = report.plot(title="reuse")
    assert fig._suptitle.get_text() == "reuse" and len(fig.axes) == 3
    plt.close(fig)


def test_the_plot_of_plain_pairs_names_them(model, task):
    """Pairs carry no split: the title said "circuits from ; accuracy on pairs" and the
    membership panel "(None)"."""
    a = make_pairs(mixed_subtask(task, "composition"), "h", n_examples=20)
    b = make_pairs(mixed_subtask(task, "composition"), "r2", n_examples=20)
    report = circuit_reuse(model, a, b, top_k=2, n_random=5, n_random_ablations=1)
    fig = report.plot(step=300)
    title = fig._suptitle.get_text()
    assert "circuits from given pairs, step 300; accuracy on the given pairs" in title
    assert fig.axes[0].get_title() == "components of each circuit (given pairs)"
    assert not any("None" in ax.get_title() for ax in fig.axes)
    plt.close(fig)
