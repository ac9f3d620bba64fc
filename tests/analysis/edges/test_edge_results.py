"""Every edge result is frozen, compares by identity (it holds tensors), and has a flat JSON-able
``summary()`` whose numbers agree with its own table, a ``to_frame()`` and a
``plot(ax=None, *, title=None, **options)``; a result of several panels refuses an ``ax``."""

import dataclasses
import json

import matplotlib
import pytest
import torch

from grok_circuits import compare_edges, edge_attribution, faithfulness
from grok_circuits.analysis.edges.reuse import edge_reuse

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402


@pytest.fixture(scope="module")
def results(small):
    model, pairs = small
    eap = edge_attribution(model, pairs, method="eap")
    ig = edge_attribution(model, pairs, method="eap-ig", ig_steps=2)
    circuit = ig.circuit(top_k=20, prune=False)
    return dict(
        scores=ig,
        circuit=circuit,
        change=compare_edges(eap, ig, top_k=5),
        faithfulness=faithfulness(model, pairs, ig, sizes=[0, 5, 20], n_random=3),
        reuse=edge_reuse(
            model,
            [pairs, pairs],
            ("a", "b"),
            top_k=5,
            method="eap",
            n_random=4,
            n_random_ablations=2,
        ),
    )


@pytest.mark.parametrize("name", ["scores", "circuit", "change", "faithfulness", "reuse"])
def test_frozen_identity_summary_frame(results, name):
    r = results[name]
    field = dataclasses.fields(r)[0].name
    with pytest.raises(dataclasses.FrozenInstanceError):
        setattr(r, field, None)
    assert r == r and r != dataclasses.replace(r)  # identity, never an element-wise compare
    summary = r.summary()
    json.dumps(summary)
    assert all(isinstance(v, int | float | bool) for v in summary.values())
    assert len(r.to_frame()) > 0


def test_summaries_agree_with_the_tables(results):
    s, c, ch = results["scores"], results["circuit"], results["change"]
    f, rep = results["faithfulness"], results["reuse"]
    assert s.summary()["top edge"] == pytest.approx(abs(s.top(1)[0][1]))
    assert c.summary()["edges"] == 20 == len(c.to_frame())
    assert c.summary()["sum of scores"] == pytest.approx(float(c.to_frame()["score"].sum()))
    assert c.summary()["graph edges"] == c.graph.n_edges * s.raw.shape[-1]
    frame = ch.to_frame()
    assert ch.summary()["max |change|"] == pytest.approx(float(frame["change"].abs().max()))
    assert ch.summary()["edges"] == len(frame)
    assert f.summary()["faithfulness"] == f.auc["faithfulness"]
    assert f.summary()["full metric"] == pytest.approx(s.clean_metric, abs=1e-5)
    assert rep.summary()["iou"] == 1.0  # the same pairs twice
    assert rep.summary()["a kept without b circuit"] == rep.kept["b"]["a"]


def test_plots_take_an_axis_and_a_title(results, small):
    for name in ("scores", "circuit", "change"):
        fig, ax = plt.subplots()
        assert results[name].plot(ax, title="mine") is fig
        assert ax.get_title() == "mine"
        plt.close(fig)
    for name in ("faithfulness", "reuse"):  # two panels each
        fig = results[name].plot(title="mine")
        assert len(fig.axes) == 2 and fig._suptitle.get_text() == "mine"
        plt.close(fig)
        fig, ax = plt.subplots()
        with pytest.raises(ValueError, match="draws two panels"):
            results[name].plot(ax)
        plt.close(fig)
    # without completeness, faithfulness is one panel, which an axis may hold
    model, pairs = small
    one = faithfulness(
        model, pairs, results["scores"], sizes=[0, 5], n_random=2, completeness=False
    )
    fig, ax = plt.subplots()
    assert one.plot(ax, title="one").axes == [ax] and ax.get_title() == "one"
    plt.close(fig)
    assert torch.isnan(one.completeness).all()
