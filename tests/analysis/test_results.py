"""Every result an analysis returns follows one contract (grok_circuits.analysis.results):
frozen, compared by identity, with summary(), to_frame() and plot(ax=None, *, title=None)."""

import dataclasses
import inspect
import itertools
import math

import matplotlib
import pandas as pd
import pytest
import torch

import grok_circuits.analysis as analysis
from grok_circuits.analysis.accuracy import GroupedAccuracy
from grok_circuits.analysis.lens.logit_lens import LogitLensResult
from grok_circuits.analysis.over_checkpoints import OverCheckpoints
from grok_circuits.analysis.paper.bridge import BridgeTrace, BridgeTraceOverTime
from grok_circuits.analysis.paper.stages import StageComparison
from grok_circuits.analysis.patching.causal_trace import CausalTrace
from grok_circuits.analysis.results import Result

matplotlib.use("Agg")

RESULTS = sorted(
    (
        obj
        for name in analysis.__all__
        if inspect.isclass(obj := getattr(analysis, name))
        and dataclasses.is_dataclass(obj)
        and callable(getattr(obj, "plot", None))
    ),
    key=lambda c: c.__name__,
)


def test_the_contract_covers_every_result_the_analyses_export():
    names = {c.__name__ for c in RESULTS}
    assert {"CausalTrace", "LogitLensResult", "BridgeTrace", "OverCheckpoints", "Analysis"} <= names
    assert len(RESULTS) >= 15


@pytest.mark.parametrize("cls", RESULTS, ids=lambda c: c.__name__)
def test_every_result_is_frozen_compared_by_identity_and_reads_three_ways(cls):
    params = cls.__dataclass_params__
    assert params.frozen and not params.eq, f"{cls.__name__}: use @dataclass(frozen=True, eq=False)"
    assert cls.__eq__ is object.__eq__
    for method in ("summary", "to_frame", "plot"):
        assert callable(getattr(cls, method, None)), f"{cls.__name__} has no .{method}()"
    plot = inspect.signature(cls.plot).parameters
    first = list(plot)[1]
    assert first == "ax" and plot["ax"].default is None, f"{cls.__name__}.plot(ax=None, ...)"
    assert plot["title"].kind is inspect.Parameter.KEYWORD_ONLY
    assert isinstance(object.__new__(cls), Result)


def _trace(scores, baseline=0.0, source=1.0, dims=("layer", "pos")):
    return CausalTrace(
        scores=scores,
        activation="resid_pre",
        direction="noise",
        dims=dims,
        positions=tuple(range(scores.shape[1])),
        pos_labels=tuple("h r1 r2 x y".split()[: scores.shape[1]]),
        baseline=baseline,
        source=source,
    )


def test_a_causal_trace_summary_names_the_cell_with_the_largest_normalized_effect():
    g = torch.Generator().manual_seed(0)
    scores = torch.rand(4, 3, generator=g) * 3 + 1
    trace = _trace(scores, baseline=1.0, source=4.0)
    best = max(itertools.product(range(4), range(3)), key=lambda c: (scores[c] - 1) / 3)
    s = trace.summary()
    assert s["peak"] == pytest.approx(float((scores[best] - 1) / 3))
    assert s["peak_at"] == f"L{best[0]} {'h r1 r2'.split()[best[1]]}"
    assert (s["baseline"], s["source"]) == (1.0, 4.0)
    heads = _trace(torch.tensor([[0.1, 0.9], [0.5, 0.2]]), dims=("layer", "head"))
    assert heads.summary()["peak_at"] == "L0H1"
    no_effect = _trace(scores, baseline=2.0, source=2.0).summary()
    assert math.isnan(no_effect["peak"]) and no_effect["peak_at"] == ""


def test_a_logit_lens_summary_is_the_best_mrr_of_each_column_and_its_row():
    ranks = torch.tensor(
        [[[3, 0], [1, 0]], [[0, 2], [0, 1]], [[1, 9], [0, 9]]]
    )  # layer batch n_pos
    lens = LogitLensResult(ranks, ("0_pre", "1_pre", "final_post"), ("a", "b"), ranks[0], ranks[0])
    # column a: MRR per row (1/4 + 1/2) / 2, (1 + 1) / 2, (1/2 + 1) / 2 -> row 1 has 1.0
    # column b: (1 + 1) / 2, (1/3 + 1/2) / 2, (1/10 + 1/10) / 2 -> row 0 has 1.0
    s = lens.summary()
    assert s == {
        "n_examples": 2,
        "best MRR a": 1.0,
        "best layer a": "1_pre",
        "best MRR b": 1.0,
        "best layer b": "0_pre",
    }


def test_a_grouped_accuracy_summary_is_its_overall_and_extreme_groups():
    result = GroupedAccuracy(
        by="gap", groups=(1, 2, 3), accuracy=(0.5, 1.0, 0.25), counts=(2, 1, 4)
    )
    assert result.summary() == {
        "by": "gap",
        "overall": pytest.approx((1 + 1 + 1) / 7),
        "n": 7,
        "n_groups": 3,
        "lowest": 0.25,
        "highest": 1.0,
    }


def _bridge_trace(strength, step):
    ranks = torch.zeros(3, 2, 3, dtype=torch.long)
    lens = LogitLensResult(
        ranks,
        ("0_pre", "1_pre", "final_post"),
        ("bridge@r1", "r2@r2", "answer@r2"),
        ranks[0],
        ranks[0],
    )
    return BridgeTrace(lens=lens, strength=_trace(strength), swap="h", n_examples=2, step=step)


def test_a_stage_comparison_summary_finds_the_largest_rise_and_fall_by_brute_force():
    g = torch.Generator().manual_seed(1)
    before, after = torch.rand(2, 3, generator=g), torch.rand(2, 3, generator=g)
    stages = StageComparison(_bridge_trace(before, 10), _bridge_trace(after, 50), 10, 50)
    cells = list(itertools.product(range(2), range(3)))
    rise = max(cells, key=lambda c: after[c] - before[c])
    fall = min(cells, key=lambda c: after[c] - before[c])
    s = stages.summary()
    assert s["largest rise"] == pytest.approx(float(after[rise] - before[rise]))
    assert s["largest rise at"] == f"L{rise[0]} {'h r1 r2'.split()[rise[1]]}"
    assert s["largest fall at"] == f"L{fall[0]} {'h r1 r2'.split()[fall[1]]}"
    assert (s["memorizing_step"], s["generalizing_step"]) == (10, 50)
    with pytest.raises(ValueError, match="panels in a figure of its own"):
        stages.plot(object())


def test_an_over_checkpoints_summary_and_its_frame_of_summaries():
    traces = [_bridge_trace(torch.full((2, 3), float(i)), step) for i, step in enumerate((5, 9))]
    over = OverCheckpoints(steps=(5, 9), results=tuple(traces), skipped=(7,))
    assert over.summary() == {"n_checkpoints": 2, "first_step": 5, "last_step": 9, "n_skipped": 1}
    frame = over.to_frame()  # every result has a summary: one column per key
    assert isinstance(frame, pd.DataFrame) and list(frame.index) == [5, 9]
    assert list(frame["step"]) == [5, 9] and list(frame["bridge_layer"]) == [0, 0]
    with pytest.raises(TypeError, match=r"pass what to plot by keyword: \.plot\(get=\.\.\.\)"):
        over.plot("bridge_layer")


def test_a_bridge_trace_over_time_summary_reads_its_steps():
    over = BridgeTraceOverTime(
        steps=(10, 20, 30),
        bridge_mrr=torch.tensor([[0.1, 0.2], [0.3, 0.6], [0.4, 0.9]]),
        r2_mrr=torch.zeros(3, 2),
        answer_mrr=torch.zeros(3, 2),
        strength=torch.zeros(3, 1, 3),
        bridge_layer=(None, 1, 1),
        threshold=0.5,
        pos_labels=("h", "r1", "r2"),
        layer_labels=("0_pre", "final_post"),
        swap="h",
        n_examples=4,
    )
    s = over.summary()
    assert s["first step with a bridge layer"] == 20 and s["bridge_layer at last step"] == 1
    assert s["best bridge MRR at last step"] == pytest.approx(0.9)
