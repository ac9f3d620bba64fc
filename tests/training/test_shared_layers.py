"""Cross-layer parameter sharing (``TrainConfig.n_loops``): one ``HookedTransformer`` whose later
blocks hold the earlier blocks' parameter objects, kept shared through training, checkpoints,
resume, export and ``load_run``."""

import pytest
import torch
from safetensors.torch import load_file

from grok_circuits import TrainConfig, build_model, load_run, model_config, train
from grok_circuits.backend import model_weights as full_weights
from grok_circuits.backend import named_parameters
from grok_circuits.model import count_loops, load_weights, model_weights, share_blocks
from grok_circuits.runs.run import export_run
from grok_circuits.training.loop import answer_loss, evaluate, make_optimizer
from tests.helpers import tiny_train_config


def _param(model, name):
    """The parameter called ``name`` (its HookedTransformer name) on either backend."""
    return dict(named_parameters(model))[name]


def _tied_pairs(model, n_unique):
    """(later block's parameter, earlier block's parameter) for every parameter of every
    later block."""
    out = []
    for i in range(n_unique, model.cfg.n_layers):
        source = dict(model.blocks[i % n_unique].named_parameters())
        for name, p in model.blocks[i].named_parameters():
            out.append((f"blocks.{i}.{name}", p, source[name]))
    return out


@pytest.fixture
def looped(tiny_composition):
    """A 4-block model run as 2 unique blocks twice."""
    cfg = model_config(tiny_composition, "tiny", n_layers=4)
    return build_model(cfg, seed=0, n_loops=2)


def test_tied_blocks_stay_the_same_tensors_after_a_step(looped, tiny_composition):
    before = {k: v.clone() for k, v in full_weights(looped).items()}
    optimizer = make_optimizer(looped, TrainConfig())
    n_params = sum(len(g["params"]) for g in optimizer.param_groups)
    assert n_params == len(list(looped.parameters())) == 16 * 2 + 6  # 2 unique blocks
    batch = tiny_composition.train.select(slice(0, 64))
    answer_loss(looped, batch).backward()
    optimizer.step()
    for name, p, source in _tied_pairs(looped, 2):
        assert p is source, name
    moved = [k for k, v in full_weights(looped).items() if not torch.equal(v, before[k])]
    assert "blocks.2.attn.W_Q" in moved and "blocks.0.attn.W_Q" in moved  # the step did move them
    assert count_loops(looped) == 2


def test_the_model_runs_its_unique_blocks_in_a_loop(looped, tiny_composition):
    """Against a hand-written Universal-Transformer forward: embed, blocks 0 and 1, blocks 0
    and 1 again, final LayerNorm, unembed; and every block keeps its own hook points."""
    tokens = tiny_composition.splits["test_id"].tokens
    with torch.no_grad():
        resid = looped.W_E[tokens] + looped.W_pos[: tokens.shape[1]]
        for _ in range(2):
            for block in list(looped.blocks)[:2]:
                resid = block(resid)
                resid = resid[0] if isinstance(resid, tuple) else resid  # the 4.x bridge's block
        expected = looped.unembed(looped.ln_final(resid))
        torch.testing.assert_close(looped(tokens), expected)
        _, cache = looped.run_with_cache(tokens)
    for layer in range(4):
        assert f"blocks.{layer}.attn.hook_pattern" in cache
    # pass two reads what pass one wrote: block 2's input is block 1's output
    torch.testing.assert_close(cache["blocks.2.hook_resid_pre"], cache["blocks.1.hook_resid_post"])


def test_training_checkpoints_each_shared_parameter_once_and_load_run_reties(
    tiny_composition, tmp_path
):
    cfg = tiny_train_config(max_steps=40, n_loops=2)
    run = train(tiny_composition, cfg, out=tmp_path / "r", progress=False)
    stored = load_file(str(run.checkpoints.dir / run.checkpoints.index()[40]["weights"]))
    assert not [
        k for k in stored if k.startswith("blocks.1.") and not k.endswith(("mask", "IGNORE"))
    ]
    assert any(k.startswith("blocks.0.attn.W_Q") for k in stored)

    loaded = load_run(tmp_path / "r")
    model = loaded.model(40, device="cpu")
    assert count_loops(model) == 2 and loaded.train_cfg.n_loops == 2
    for name, p, source in _tied_pairs(model, 1):
        assert p is source, name
    # the reloaded model is the trained one: it gives the metrics recorded during training
    measured = evaluate(model, loaded.task.probes(cfg.eval_size))
    recorded = loaded.metrics[-1]
    for key, value in measured.items():
        torch.testing.assert_close(value, recorded[key], rtol=1e-5, atol=1e-6, msg=key)

    exported = export_run(loaded, tmp_path / "exported", steps=[0, 40])
    again = exported.model(40, device="cpu")
    assert _param(again, "blocks.1.mlp.W_in") is _param(again, "blocks.0.mlp.W_in")
    for a, b in zip(full_weights(model).values(), full_weights(again).values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)


def test_resume_with_shared_blocks_gives_the_same_metrics(tiny_composition, tmp_path):
    cfg = tiny_train_config(max_steps=60, n_loops=2)
    full = train(tiny_composition, cfg, out=tmp_path / "full", progress=False)
    train(
        tiny_composition,
        tiny_train_config(max_steps=20, n_loops=2),
        out=tmp_path / "half",
        progress=False,
    )
    resumed = train(tiny_composition, cfg, out=tmp_path / "half", resume=True, progress=False)
    strip = lambda rows: [{k: v for k, v in r.items() if k != "time"} for r in rows]  # noqa: E731
    assert strip(resumed.metrics) == strip(full.metrics)
    model = resumed.model(60, device="cpu")
    assert _param(model, "blocks.1.attn.W_O") is _param(model, "blocks.0.attn.W_O")
    with pytest.raises(ValueError, match="n_loops"):  # the sharing is part of the run
        train(
            tiny_composition,
            tiny_train_config(max_steps=80),
            out=tmp_path / "half",
            resume=True,
            progress=False,
        )


def test_weights_that_do_not_fit_the_sharing_are_refused(looped, tiny_composition):
    plain = build_model(looped.cfg, seed=1)
    with pytest.raises(ValueError, match="different values"):
        load_weights(looped, full_weights(plain))
    with pytest.raises(ValueError, match="same n_loops"):
        load_weights(plain, model_weights(looped))
    # a full state dict of a shared model loads into a shared model
    copy = load_weights(build_model(looped.cfg, seed=5, n_loops=2), full_weights(looped))
    assert _param(copy, "blocks.3.ln2.w") is _param(copy, "blocks.1.ln2.w")
    torch.testing.assert_close(_param(copy, "blocks.3.ln2.w"), _param(looped, "blocks.1.ln2.w"))


@pytest.mark.parametrize("n_loops", [0, 3, pytest.param(2.0, marks=pytest.mark.wrong_types)])
def test_n_loops_must_divide_the_depth(looped, n_loops):
    with pytest.raises(ValueError, match="n_loops"):
        share_blocks(looped, n_loops)


def test_bad_n_loops_in_the_config(tiny_composition, tmp_path):
    with pytest.raises(ValueError, match="n_loops"):
        TrainConfig(n_loops=0)
    with pytest.raises(ValueError, match="divides n_layers=2"):
        train(tiny_composition, tiny_train_config(n_loops=3), out=tmp_path / "r", progress=False)
    assert not (tmp_path / "r").exists()
    assert TrainConfig.from_dict({"max_steps": 5}).n_loops == 1  # runs saved before the field
