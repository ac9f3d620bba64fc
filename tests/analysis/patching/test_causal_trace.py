"""Causal tracing against TransformerLens' own patcher, a slow per-patch loop and planted
effects, on tiny random models."""

import pytest
import torch
from torch.testing import assert_close
from transformer_lens import patching

from grok_circuits import backend
from grok_circuits.analysis import (
    CausalTrace,
    causal_trace,
    make_counterfactuals,
    rows_by_iteration,
    trace_head_out,
    trace_head_out_by_pos,
    trace_resid_pre,
)
from grok_circuits.analysis.patching.causal_trace import _can_start_midway
from tests.analysis.conftest import seeded_tokens

TOL = dict(atol=1e-5, rtol=1e-5)


# ----------------------------------------------------------------------------- helpers
def answer_metric(answer_pos, answers):
    """Mean logit of the answer at the answer position (a TL-style scalar metric)."""

    def metric(logits):
        return logits[torch.arange(len(answers)), answer_pos, answers].mean()

    return metric


def per_example_metric(answer_pos, answers):
    def metric(logits):
        return logits[torch.arange(len(answers)), answer_pos, answers]

    return metric


@pytest.fixture(scope="module")
def pair(tiny_composition):
    """Clean prompts and corrupt prompts with *every* position random (no patch is a no-op)."""
    s = tiny_composition.splits["train_inferred"].sample(40, seed=0)
    corrupt = seeded_tokens(s.tokens.shape, len(tiny_composition.vocab), seed=1)
    return s.tokens, corrupt, s.answer_pos, s.answers


@pytest.fixture(scope="module")
def swapped(tiny_composition):
    """Real counterfactuals: one token swapped (r1), so every patch before it is a no-op."""
    return make_counterfactuals(tiny_composition, "r1", n_examples=40, seed=0)


def slow_trace(model, base_tokens, source_tokens, metric, name_of_layer, columns, heads=None):
    """The obviously-right reference: one full forward pass per patch, patching with a plain
    index assignment. ``columns`` is a list of position lists; ``heads`` a list of heads (z)."""
    _, source_cache = model.run_with_cache(source_tokens)
    out = []
    for layer in range(model.cfg.n_layers):
        name = name_of_layer(layer)
        row = []
        for cols in columns:
            cells = []
            for h in heads if heads is not None else [None]:

                def hook(act, hook, cols=cols, h=h, name=name):
                    act = act.clone()
                    if h is None:
                        act[:, cols] = source_cache[name][:, cols]
                    else:
                        act[:, cols, h] = source_cache[name][:, cols, h]
                    return act

                with torch.no_grad():
                    logits = model.run_with_hooks(base_tokens, fwd_hooks=[(name, hook)])
                cells.append(metric(logits))
            row.append(torch.stack(cells))
        out.append(torch.stack(row))
    return torch.stack(out).squeeze(2) if heads is None else torch.stack(out)


# ----------------------------------------------------------------------------- against TL
@pytest.mark.parametrize("corruption", ["random", "h", "r1", "r2"])
def test_denoise_resid_pre_is_transformer_lens_get_act_patch_resid_pre(
    composition_model, tiny_composition, pair, corruption
):
    """Random corrupt prompts (every patch computed) and one-token swaps (patches skipped,
    copied from the clean run, or started after a prefix) must all give TL's numbers."""
    if corruption == "random":
        clean, corrupt, pos, ans = pair
    else:
        cf = make_counterfactuals(tiny_composition, corruption, n_examples=40, seed=0)
        clean, corrupt, pos, ans = cf.clean, cf.corrupt, cf.answer_pos, cf.clean_answers
    metric = answer_metric(pos, ans)
    _, clean_cache = composition_model.run_with_cache(clean)
    expected = patching.get_act_patch_resid_pre(composition_model, corrupt, clean_cache, metric)
    trace = causal_trace(composition_model, clean, corrupt, metric, direction="denoise")
    assert trace.scores.shape == (composition_model.cfg.n_layers, clean.shape[1])
    assert trace.dims == ("layer", "pos")
    assert_close(trace.scores, expected.cpu(), **TOL)


@pytest.mark.parametrize("swap", ["h", "r1"])
def test_a_metric_reading_every_position_matches_transformer_lens(
    composition_model, tiny_composition, swap
):
    """Positions before a patch are copied from one of the unpatched runs, not recomputed: a
    metric that reads the logits of every position checks those copies."""
    cf = make_counterfactuals(tiny_composition, swap, n_examples=40, seed=0)
    weights = torch.randn(
        cf.clean.shape[1], composition_model.cfg.d_vocab, generator=torch.Generator().manual_seed(0)
    )

    def everywhere(logits):
        return (logits.log_softmax(-1) * weights).sum((1, 2)).mean()

    for direction in ("denoise", "noise"):
        base, source = (cf.corrupt, cf.clean) if direction == "denoise" else (cf.clean, cf.corrupt)
        _, source_cache = composition_model.run_with_cache(source)
        expected = patching.get_act_patch_resid_pre(
            composition_model, base, source_cache, everywhere
        )
        trace = causal_trace(
            composition_model, cf.clean, cf.corrupt, everywhere, direction=direction
        )
        assert_close(trace.scores, expected.cpu(), **TOL)


@pytest.mark.parametrize(
    "activation, tl_patcher",
    [
        ("resid_mid", patching.get_act_patch_resid_mid),
        ("attn_out", patching.get_act_patch_attn_out),
        ("mlp_out", patching.get_act_patch_mlp_out),
    ],
)
def test_each_layer_pos_activation_matches_transformer_lens(
    composition_model, pair, swapped, activation, tl_patcher
):
    for clean, corrupt, pos, ans in (
        pair,
        (swapped.clean, swapped.corrupt, swapped.answer_pos, swapped.clean_answers),
    ):
        metric = answer_metric(pos, ans)
        _, clean_cache = composition_model.run_with_cache(clean)
        expected = tl_patcher(composition_model, corrupt, clean_cache, metric)
        trace = causal_trace(
            composition_model, clean, corrupt, metric, activation=activation, direction="denoise"
        )
        assert_close(trace.scores, expected.cpu(), **TOL)


def test_resid_post_matches_transformer_lens_generic_patcher(composition_model, swapped):
    metric = answer_metric(swapped.answer_pos, swapped.clean_answers)
    _, clean_cache = composition_model.run_with_cache(swapped.clean)
    expected = patching.generic_activation_patch(
        composition_model,
        swapped.corrupt,
        clean_cache,
        metric,
        patch_setter=patching.layer_pos_patch_setter,
        activation_name="resid_post",
        index_axis_names=("layer", "pos"),
    )
    trace = causal_trace(
        composition_model,
        swapped.clean,
        swapped.corrupt,
        metric,
        activation="resid_post",
        direction="denoise",
    )
    assert_close(trace.scores, expected.cpu(), **TOL)


def test_heads_match_transformer_lens_by_pos_and_all_pos(composition_model, pair, swapped):
    for clean, corrupt, pos, ans in (
        pair,
        (swapped.clean, swapped.corrupt, swapped.answer_pos, swapped.clean_answers),
    ):
        metric = answer_metric(pos, ans)
        _, clean_cache = composition_model.run_with_cache(clean)
        by_pos = patching.get_act_patch_attn_head_out_by_pos(
            composition_model, corrupt, clean_cache, metric
        )
        all_pos = patching.get_act_patch_attn_head_out_all_pos(
            composition_model, corrupt, clean_cache, metric
        )
        ours_by_pos = trace_head_out_by_pos(
            composition_model, clean, corrupt, metric, direction="denoise"
        )
        ours_all = trace_head_out(composition_model, clean, corrupt, metric, direction="denoise")
        assert ours_by_pos.dims == ("layer", "pos", "head")
        assert ours_all.dims == ("layer", "head")
        assert_close(ours_by_pos.scores, by_pos.cpu(), **TOL)
        assert_close(ours_all.scores, all_pos.cpu(), **TOL)


def test_noise_is_transformer_lens_with_the_roles_swapped(composition_model, swapped):
    """direction='noise' runs the clean input and patches in corrupt states."""
    metric = answer_metric(swapped.answer_pos, swapped.clean_answers)
    _, corrupt_cache = composition_model.run_with_cache(swapped.corrupt)
    expected = patching.get_act_patch_resid_pre(
        composition_model, swapped.clean, corrupt_cache, metric
    )
    trace = causal_trace(
        composition_model, swapped.clean, swapped.corrupt, metric, direction="noise"
    )
    assert_close(trace.scores, expected.cpu(), **TOL)


def test_full_forward_path_matches_transformer_lens_on_a_rotary_model(rotary_model, swapped):
    """Rotary models cannot start mid-way from a stored residual; the fallback must agree."""
    assert not _can_start_midway(rotary_model)
    metric = answer_metric(swapped.answer_pos, swapped.clean_answers)
    _, clean_cache = rotary_model.run_with_cache(swapped.clean)
    expected = patching.get_act_patch_resid_pre(rotary_model, swapped.corrupt, clean_cache, metric)
    trace = causal_trace(rotary_model, swapped.clean, swapped.corrupt, metric, direction="denoise")
    assert_close(trace.scores, expected.cpu(), **TOL)


def test_comparison_model_with_five_positions_matches_transformer_lens(
    comparison_model, tiny_comparison
):
    cf = make_counterfactuals(tiny_comparison, "e2", n_examples=30, seed=0)
    metric = answer_metric(cf.answer_pos, cf.clean_answers)
    _, clean_cache = comparison_model.run_with_cache(cf.clean)
    expected = patching.get_act_patch_attn_out(comparison_model, cf.corrupt, clean_cache, metric)
    trace = causal_trace(
        comparison_model, cf.clean, cf.corrupt, metric, activation="attn_out", direction="denoise"
    )
    assert_close(trace.scores, expected.cpu(), **TOL)


# ----------------------------------------------------------------------------- against a loop
@pytest.mark.parametrize("direction", ["denoise", "noise"])
def test_grouped_positions_and_per_example_values_match_a_slow_loop(
    composition_model, swapped, direction
):
    clean, corrupt = swapped.clean, swapped.corrupt
    base, source = (corrupt, clean) if direction == "denoise" else (clean, corrupt)
    metric = per_example_metric(swapped.answer_pos, swapped.clean_answers)
    columns = [[0], [2], [1, 2], [0, 1, 2]]
    expected = slow_trace(
        composition_model,
        base,
        source,
        metric,
        lambda layer: f"blocks.{layer}.hook_mlp_out",
        columns,
    )  # [layer, column, batch]
    trace = causal_trace(
        composition_model,
        clean,
        corrupt,
        metric,
        activation="mlp_out",
        direction=direction,
        positions=[0, 2, [1, 2], [0, 1, 2]],
        per_example=True,
    )
    assert trace.positions == (0, 2, (1, 2), (0, 1, 2))
    assert_close(trace.per_example, expected, **TOL)
    assert_close(trace.scores, expected.mean(-1), **TOL)


def test_heads_at_chosen_positions_match_a_slow_loop(composition_model, pair):
    clean, corrupt, pos, ans = pair
    metric = answer_metric(pos, ans)
    n_heads = composition_model.cfg.n_heads
    expected = slow_trace(
        composition_model,
        corrupt,
        clean,
        metric,
        lambda layer: f"blocks.{layer}.attn.hook_z",
        [[1], [2]],
        heads=list(range(n_heads)),
    )
    trace = causal_trace(
        composition_model,
        clean,
        corrupt,
        metric,
        activation="z",
        positions=[1, 2],
        direction="denoise",
    )
    assert_close(trace.scores, expected, **TOL)


def test_small_batches_give_the_same_numbers(composition_model, swapped):
    metric = answer_metric(swapped.answer_pos, swapped.clean_answers)
    big = trace_resid_pre(
        composition_model, swapped.clean, swapped.corrupt, metric, direction="denoise"
    )
    small = trace_resid_pre(
        composition_model, swapped.clean, swapped.corrupt, metric, batch_size=7, direction="denoise"
    )
    assert_close(small.scores, big.scores, **TOL)


# ----------------------------------------------------------------------------- planted effects
def test_patching_a_state_into_its_own_run_changes_nothing(composition_model, pair):
    clean, _, pos, ans = pair
    metric = answer_metric(pos, ans)
    with torch.no_grad():
        expected = metric(composition_model(clean))
    for activation in ("resid_pre", "attn_out", "z"):
        trace = causal_trace(
            composition_model, clean, clean, metric, activation=activation, direction="denoise"
        )
        assert trace.patched_rows == 0  # every patch recognised as a no-op
        assert_close(trace.scores, torch.full_like(trace.scores, float(expected)), **TOL)
        assert trace.baseline == pytest.approx(float(expected), abs=1e-5)


def test_patching_the_whole_stream_transfers_the_whole_effect(composition_model, pair):
    """The embeddings at every position, or the last block's output at every position, are
    the whole run: patching them gives the source run's metric exactly."""
    clean, corrupt, pos, ans = pair
    metric = answer_metric(pos, ans)
    every = [list(range(clean.shape[1]))]
    with torch.no_grad():
        clean_value = float(metric(composition_model(clean)))
        corrupt_value = float(metric(composition_model(corrupt)))
    for direction, source in (("denoise", clean_value), ("noise", corrupt_value)):
        pre = causal_trace(
            composition_model, clean, corrupt, metric, positions=every, direction=direction
        )
        post = causal_trace(
            composition_model,
            clean,
            corrupt,
            metric,
            positions=every,
            activation="resid_post",
            direction=direction,
        )
        assert pre.source == pytest.approx(source, abs=1e-5)
        assert float(pre.scores[0, 0]) == pytest.approx(source, abs=1e-5)
        assert float(post.scores[-1, 0]) == pytest.approx(source, abs=1e-5)
        assert float(pre.normalized[0, 0]) == pytest.approx(1.0, abs=1e-4)


def test_positions_after_the_answer_have_no_effect(composition_model, tiny_composition, request):
    """Causal attention: states after the answer position cannot reach the answer logits."""
    # mid-way start and full forward passes (where the backend cannot start mid-way, every model
    # takes the latter)
    models = [composition_model]
    if backend.supports("midway_start") and backend.supports("all_architectures"):
        models.append(request.getfixturevalue("rotary_model"))
    atomic = tiny_composition.splits["id_atomic"].sample(30, seed=0)  # answer at position 1
    clean = torch.cat([atomic.tokens, atomic.tokens[:, :1]], dim=1)  # a 3rd, later position
    corrupt = seeded_tokens(clean.shape, len(tiny_composition.vocab), seed=5)
    corrupt[:, 1] = clean[:, 1]
    metric = answer_metric(atomic.answer_pos, atomic.answers)
    for model in models:
        trace = causal_trace(model, clean, corrupt, metric, direction="noise")
        assert trace.patched_rows > 0
        assert_close(trace.scores[:, 2], torch.full((trace.n_layers,), trace.baseline), **TOL)


# ----------------------------------------------------------------------------- the result / errors
def test_result_prints_a_table_and_plots(composition_model, swapped):
    metric = answer_metric(swapped.answer_pos, swapped.clean_answers)
    trace = causal_trace(
        composition_model, swapped.clean, swapped.corrupt, metric, direction="denoise"
    )
    assert isinstance(trace, CausalTrace)
    text = repr(trace)
    assert "resid_pre" in text and "L0" in text and len(text.splitlines()) == 1 + 1 + trace.n_layers
    frame = trace.to_frame()
    assert frame.shape == tuple(trace.scores.shape)
    fig = trace.plot()
    assert fig.axes
    import matplotlib.pyplot as plt

    plt.close(fig)


def test_hooks_are_removed_even_when_the_metric_fails(composition_model, swapped, no_hooks_left):
    calls = []

    def failing(logits):
        calls.append(1)
        if len(calls) > 2:
            raise RuntimeError("metric failed")
        return logits.mean()

    no_hooks_left(composition_model)
    with pytest.raises(RuntimeError, match="metric failed"):
        causal_trace(
            composition_model, swapped.clean, swapped.corrupt, failing, direction="denoise"
        )


@pytest.mark.wrong_types
def test_bad_input_raises_value_errors_that_name_the_problem(composition_model, pair):
    clean, corrupt, pos, ans = pair
    metric = answer_metric(pos, ans)
    with pytest.raises(ValueError, match="same shape"):
        causal_trace(composition_model, clean, corrupt[:, :2], metric, direction="denoise")
    with pytest.raises(ValueError, match="activation="):
        causal_trace(
            composition_model, clean, corrupt, metric, activation="resid", direction="denoise"
        )
    with pytest.raises(ValueError, match="direction="):
        causal_trace(composition_model, clean, corrupt, metric, direction="forward")
    with pytest.raises(ValueError, match="positions is empty"):
        causal_trace(composition_model, clean, corrupt, metric, positions=[], direction="denoise")
    with pytest.raises(ValueError, match="outside the prompts"):
        causal_trace(composition_model, clean, corrupt, metric, positions=[5], direction="denoise")
    with pytest.raises(ValueError, match="per_example=True"):
        causal_trace(
            composition_model, clean, corrupt, per_example_metric(pos, ans), direction="denoise"
        )
    with pytest.raises(ValueError, match="one value per example"):
        causal_trace(
            composition_model, clean, corrupt, metric, per_example=True, direction="denoise"
        )
    with pytest.raises(ValueError, match="per_position=False"):
        causal_trace(
            composition_model, clean, corrupt, metric, per_position=False, direction="denoise"
        )


# ----------------------------------------------------------------------------- recurrent models
@pytest.mark.parametrize("inject", [False, True])
@pytest.mark.parametrize("activation", ["resid_pre", "resid_post"])
def test_a_recurrent_model_traces_one_row_per_unrolled_block(
    tiny_composition, pair, inject, activation
):
    """A recurrent-depth model run 3 times (prelude 1, core 2, coda 1: 8 blocks, its nominal
    count 2) is traced unchanged: one row per unrolled block, each iteration under its own hook
    names, equal to the slow per-patch loop (with input injection too, whose added term must be
    neither lost nor added twice when a patched run starts mid-way)."""
    from grok_circuits.model import build_model, model_config
    from grok_circuits.recurrence import Recurrence, iterations

    spec = Recurrence(prelude=1, core=2, coda=1, iterations=2, inject=inject)
    model = build_model(
        model_config(tiny_composition, "tiny", n_layers=spec.depth()), seed=4, recurrence=spec
    ).eval()
    clean, corrupt, pos, ans = pair
    metric = answer_metric(pos, ans)
    with iterations(model, 3):
        assert model.cfg.n_layers == spec.depth(3) == 8
        trace = causal_trace(model, clean, corrupt, metric, activation=activation)
        expected = slow_trace(
            model,
            clean,
            corrupt,
            metric,
            lambda layer: f"blocks.{layer}.hook_{activation}",
            [[p] for p in range(clean.shape[1])],
        )
    assert trace.scores.shape == (8, clean.shape[1])
    assert_close(trace.scores, expected, **TOL)
    grouped = rows_by_iteration(trace, spec)
    assert grouped.shape == (3, 2, clean.shape[1])
    for j in range(3):
        for c, block in enumerate(spec.layers(j, 3)):
            assert torch.equal(grouped[j, c], trace.scores[block])
    with pytest.raises(ValueError, match="not prelude=1 \\+ core=4"):
        rows_by_iteration(trace, Recurrence(prelude=1, core=4, coda=1, iterations=2))
