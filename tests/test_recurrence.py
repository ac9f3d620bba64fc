"""Recurrent-depth models (:mod:`grok_circuits.recurrence`): a prelude, a core iterated a count
chosen at training and at inference, and a coda, as one model whose blocks share parameters and
whose every iteration has its own hook names; on either TransformerLens line."""

import json
import math
import shutil
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grok_circuits import TrainConfig, build_model, load_run, model_config, train
from grok_circuits.backend import named_parameters
from grok_circuits.model import count_loops, model_weights
from grok_circuits.recurrence import (
    Recurrence,
    draw_iterations,
    iterations,
    iterations_of,
    recurrence_of,
    set_iterations,
)
from grok_circuits.training.loop import answer_loss, make_optimizer
from tests.helpers import tiny_train_config, without_time

#: A tiny n_loops=2 run (2 blocks run as 1 block twice, 40 steps) and its logits on test_id,
#: both written by grok_circuits before recurrent cores existed (TransformerLens 3.9).
OLD_LOOPS_RUN = Path(__file__).parent / "data" / "loops_run"

SPLIT = Recurrence(prelude=1, core=2, coda=1, iterations=3)


def _block(block, resid):
    out = block(resid)
    return out[0] if isinstance(out, tuple) else out  # the 4.x bridge's block returns a tuple


def _hand_loop(model, tokens, spec: Recurrence, n: int):
    """The recurrent forward pass written out: embed, prelude, the core ``n`` times (the
    prelude's output added before each iteration after the first, with ``inject``), coda,
    final LayerNorm, unembed; calling the nominal model's own first-iteration block modules."""
    blocks = list(model.blocks)
    p, c = spec.prelude, spec.core
    prelude, core, coda = blocks[:p], blocks[p : p + c], blocks[spec.depth() - spec.coda :]
    resid = model.W_E[tokens] + model.W_pos[: tokens.shape[1]]
    for block in prelude:
        resid = _block(block, resid)
    injected = resid
    for j in range(n):
        if spec.inject and j > 0:
            resid = resid + injected
        for block in core:
            resid = _block(block, resid)
    for block in coda:
        resid = _block(block, resid)
    return model.unembed(model.ln_final(resid))


def _blocks_with_parameters(weights) -> set[str]:
    """The block indices that hold parameters in a checkpoint (every block keeps its attention
    mask buffers)."""
    return {
        k.split(".")[1]
        for k in weights
        if k.startswith("blocks.") and not k.endswith(("mask", "IGNORE"))
    }


def _recurrent(task, spec=SPLIT, seed=0):
    cfg = model_config(task, "tiny", n_layers=spec.depth())
    return build_model(cfg, seed=seed, recurrence=spec)


@pytest.mark.parametrize("inject", [False, True])
def test_the_forward_pass_is_the_hand_written_loop(tiny_composition, inject):
    spec = Recurrence(prelude=1, core=2, coda=1, iterations=3, inject=inject)
    model = _recurrent(tiny_composition, spec).eval()
    tokens = tiny_composition.splits["test_id"].tokens[:32]
    with torch.no_grad():
        expected = {n: _hand_loop(model, tokens, spec, n) for n in (1, 3, 5)}
        torch.testing.assert_close(model(tokens), expected[3])
        assert not torch.allclose(expected[3], expected[5])  # the count changes the answer
        for n in (5, 1, 3):  # more, fewer and back again: the blocks are reused
            set_iterations(model, n)
            assert model.cfg.n_layers == spec.depth(n) == len(model.blocks)
            torch.testing.assert_close(model(tokens), expected[n])


@pytest.mark.parametrize("inject", [False, True])
def test_every_iteration_has_its_own_hook_names(tiny_composition, inject):
    spec = Recurrence(prelude=1, core=2, coda=1, iterations=3, inject=inject)
    model = _recurrent(tiny_composition, spec).eval()
    tokens = tiny_composition.splits["test_id"].tokens[:8]
    set_iterations(model, 6)  # more iterations than it was built with
    with torch.no_grad():
        _, cache = model.run_with_cache(tokens)
    assert iterations_of(model) == 6 and spec.depth(6) == 14
    for layer in range(14):
        assert cache[f"blocks.{layer}.attn.hook_pattern"].shape[-1] == tokens.shape[1]
    assert "blocks.14.hook_resid_pre" not in cache
    injected = cache["blocks.1.hook_resid_pre"]  # the prelude's output
    for layer in range(1, 14):
        before = cache[f"blocks.{layer - 1}.hook_resid_post"]
        starts_iteration = layer in [spec.layers(j, 6)[0] for j in range(1, 6)]
        expected = before + injected if inject and starts_iteration else before
        torch.testing.assert_close(cache[f"blocks.{layer}.hook_resid_pre"], expected)
    # a user's hook on a later iteration changes the answer: it is a real point of the pass
    layer = spec.layers(4, 6)[1]
    with model.hooks(fwd_hooks=[(f"blocks.{layer}.hook_resid_post", lambda a, hook: a * 0)]):
        patched = model(tokens)
    assert not torch.allclose(patched, model(tokens))


def test_shared_parameters_stay_the_same_objects_after_a_step(tiny_composition):
    model = _recurrent(tiny_composition)
    set_iterations(model, 5)
    optimizer = make_optimizer(model, TrainConfig())
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == len(list(model.parameters())) == 16 * 4 + 6  # 4 unique blocks
    before = {k: v.detach().clone() for k, v in named_parameters(model)}
    answer_loss(model, tiny_composition.train.select(slice(0, 64))).backward()
    optimizer.step()
    params = dict(named_parameters(model))
    for layer in range(SPLIT.depth(5)):  # prelude 0, core 1-10, coda 11
        source = 1 + (layer - 1) % 2 if 1 <= layer <= 10 else layer
        for leaf in ("attn.W_Q", "mlp.W_out", "ln1.w"):
            assert params[f"blocks.{layer}.{leaf}"] is params[f"blocks.{source}.{leaf}"]
    assert not torch.equal(params["blocks.9.attn.W_Q"], before["blocks.9.attn.W_Q"])
    set_iterations(model, 3)
    again = dict(named_parameters(model))
    assert again["blocks.5.attn.W_Q"] is params["blocks.1.attn.W_Q"]
    assert again["blocks.7.mlp.W_in"] is params["blocks.11.mlp.W_in"]  # the coda moved up


def test_the_iterations_context_restores_the_count(tiny_composition):
    model = _recurrent(tiny_composition)
    with pytest.raises(RuntimeError, match="inside"):
        with iterations(model, 7):
            assert model.cfg.n_layers == SPLIT.depth(7)
            raise RuntimeError("inside")
    assert iterations_of(model) == 3 and model.cfg.n_layers == 8 and len(model.blocks) == 8


def test_weights_are_stored_in_the_nominal_layout_whatever_the_count(tiny_composition):
    model = _recurrent(tiny_composition)
    stored = model_weights(model)
    blocks = _blocks_with_parameters(stored)
    assert blocks == {"0", "1", "2", "7"}  # prelude, the core's two blocks once, coda at 7
    set_iterations(model, 9)
    assert model_weights(model).keys() == stored.keys()
    assert iterations_of(model) == 9  # reading them left the count as it was


def test_training_draws_counts_and_checkpoints_one_copy_and_resumes_exactly(
    tiny_composition, tmp_path
):
    kw = dict(prelude=1, core=1, coda=1, iterations=(1, 4), inject=True)
    cfg = tiny_train_config(max_steps=60, **kw)
    assert {draw_iterations(cfg, s) for s in range(1, 61)} == {1, 2, 3, 4}
    full = train(tiny_composition, cfg, out=tmp_path / "full", progress=False)
    assert full.model_cfg.n_layers == 1 + 1 * 4 + 1  # nominal: the top of the range
    stored = load_file(str(full.checkpoints.dir / full.checkpoints.index()[60]["weights"]))
    blocks = _blocks_with_parameters(stored)
    assert blocks == {"0", "1", "5"}
    train(
        tiny_composition,
        tiny_train_config(max_steps=20, **kw),
        out=tmp_path / "half",
        progress=False,
    )
    resumed = train(tiny_composition, cfg, out=tmp_path / "half", resume=True, progress=False)
    assert without_time(resumed.metrics) == without_time(full.metrics)
    model = resumed.model(60, device="cpu", iterations=7)
    assert model.cfg.n_layers == 9 and recurrence_of(model).inject
    params = dict(named_parameters(model))
    assert params["blocks.7.attn.W_V"] is params["blocks.1.attn.W_V"]
    assert "model" in resumed.summary() and "core 1 x 4" in resumed.summary()["model"]


def test_a_drawn_count_follows_the_clipped_poisson(tiny_composition):
    cfg = TrainConfig(core=2, iterations=(2, 8), iterations_mean=4.0, seed=3)
    draws = [draw_iterations(cfg, step) for step in range(1, 4001)]
    pmf = [math.exp(-4) * 4**k / math.factorial(k) for k in range(60)]
    expected = sum(min(max(k, 2), 8) * p for k, p in enumerate(pmf))
    assert min(draws) == 2 and max(draws) == 8
    assert abs(sum(draws) / len(draws) - expected) < 0.1  # sd of the mean ~0.03
    assert draws == [draw_iterations(cfg, step) for step in range(1, 4001)]  # (seed, step) only


def test_a_plain_model_or_run_has_no_iterations(tiny_composition, tmp_path):
    plain = build_model(model_config(tiny_composition, "tiny"), seed=0)
    with pytest.raises(ValueError, match="no recurrent core"):
        set_iterations(plain, 2)
    run = train(
        tiny_composition, tiny_train_config(max_steps=20), out=tmp_path / "r", progress=False
    )
    with pytest.raises(ValueError, match="no recurrent core"):
        run.model(20, device="cpu", iterations=2)
    with pytest.raises(ValueError, match="integer >= 1"):
        set_iterations(_recurrent(tiny_composition), 0)


@pytest.mark.parametrize(
    "fields, message",
    [
        (dict(iterations=3), "core is None"),
        (dict(inject=True), "core is None"),
        (dict(core=2, n_loops=2), "set one of them"),
        (dict(core=2, iterations=(3, 2)), "iterations"),
        (dict(core=2, iterations=3, iterations_mean=2.0), "iterations_mean"),
        (dict(core=0), "core"),
        (dict(core=1, prelude=-1), "prelude"),
    ],
)
def test_bad_recurrence_configs(fields, message):
    with pytest.raises(ValueError, match=message):
        TrainConfig(**fields)


def test_the_config_round_trips_a_range(tiny_composition, tmp_path):
    cfg = TrainConfig(core=2, iterations=(2, 8), iterations_mean=4.0, eval_iterations=5)
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg
    with pytest.raises(ValueError, match="n_layers=5"):  # a model config of the wrong depth
        train(
            tiny_composition,
            tiny_train_config(core=2, iterations=2),
            out=tmp_path / "r",
            model_cfg=model_config(tiny_composition, "tiny", n_layers=5),
            progress=False,
        )


def test_an_n_loops_run_written_before_recurrent_cores_loads_unchanged(tiny_composition, tmp_path):
    path = tmp_path / "run"
    shutil.copytree(OLD_LOOPS_RUN / "run", path)
    stored = json.loads((path / "train_config.json").read_text())
    assert "core" not in stored and stored["n_loops"] == 2
    run = load_run(path)
    model = run.model(40, device="cpu")
    expected = load_file(str(OLD_LOOPS_RUN / "logits.safetensors"))["logits"]
    with torch.no_grad():
        torch.testing.assert_close(model(tiny_composition.splits["test_id"].tokens), expected)
    assert count_loops(model) == 2 and recurrence_of(model) == Recurrence(core=1, iterations=2)
    # n_loops is one case of a recurrent core: it runs any number of passes
    deeper = run.model(40, device="cpu", iterations=4)
    params = dict(named_parameters(deeper))
    assert deeper.cfg.n_layers == 4 and params["blocks.3.attn.W_K"] is params["blocks.0.attn.W_K"]
    # and a run trained now with n_loops stores the same names as that run did
    new = train(tiny_composition, tiny_train_config(max_steps=20, n_loops=2), out=tmp_path / "new")
    new_keys = load_file(str(new.checkpoints.dir / new.checkpoints.index()[20]["weights"]))
    old_keys = load_file(str(path / "checkpoints" / run.checkpoints.index()[40]["weights"]))
    assert new_keys.keys() == old_keys.keys()


def test_the_cli_trains_a_recurrent_core(tmp_path, capsys):
    from grok_circuits.cli import main

    out = tmp_path / "r"
    args = ["train", "composition", "--out", str(out), "--model-size", "tiny", "--steps", "20"]
    args += ["--eval-every", "10", "--batch-size", "64", "--device", "cpu", "--threads", "1"]
    args += ["--no-progress", "--no-report", "--core", "1", "--coda", "1", "--iterations", "2-3"]
    args += ["--inject"]
    for kv in ("n_entities=30", "n_relations=6", "out_degree=3", "phi=2.0"):
        args += ["--task-param", kv]
    assert main(args) == 0
    cfg = load_run(out).train_cfg
    assert (cfg.core, cfg.coda, cfg.iterations, cfg.inject) == (1, 1, (2, 3), True)
    assert load_run(out).model_cfg.n_layers == 4
    with pytest.raises(SystemExit):  # argparse's usage error
        main(args + ["--iterations", "2-x"])
    assert "LO-HI" in capsys.readouterr().err
