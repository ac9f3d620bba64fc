"""The backend layer: the same model, weights and training on TransformerLens 3.x
(``HookedTransformer``) and 4.x (``TransformerBridge``).

Cross-version guarantees are checked against runs trained under each version and shipped in
``tests/data/cross_version/tl3`` and ``tl4`` (made by ``tests/data/make_cross_version.py``): the
suite runs under both (``tests/run_both.sh``), so each version loads the other's run. The 3.x
specifics are checked against ``HookedTransformer`` itself."""

import functools
import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from grok_circuits import backend, load_run, train
from grok_circuits.model import build_model, model_config, model_weights
from grok_circuits.training.loop import answer_loss, make_optimizer
from tests.data.make_cross_version import STEPS, edge_reference, fixture_config

DATA = Path(__file__).parent / "data" / "cross_version"
SHIPPED = Path(__file__).parents[1] / "data" / "runs"
VERSIONS = ("tl3", "tl4")


@pytest.fixture(scope="module", params=VERSIONS)
def fixture_run(request):
    return request.param, load_run(DATA / request.param)


def test_a_run_trained_under_either_version_gives_its_logits_here(fixture_run):
    version, run = fixture_run
    model = run.model(STEPS, device="cpu")
    assert type(model) is backend.model_class()
    with torch.no_grad():
        logits = model(run.task.splits["test_id"].tokens)
    expected = load_file(str(DATA / version / "logits.safetensors"))["logits"]
    torch.testing.assert_close(logits, expected, rtol=0, atol=1e-5)


def test_a_seed_starts_from_the_same_weights_under_both_versions(fixture_run):
    _, run = fixture_run
    start = run.checkpoints.load_weights(0)
    model = build_model(run.model_cfg, seed=run.train_cfg.seed)
    ours = model_weights(model)
    assert set(ours) == set(start)
    for name, value in start.items():
        assert torch.equal(ours[name], value), name


def test_training_gives_the_metrics_recorded_under_both_versions(tmp_path):
    """Retrain the fixture's 400 steps here. Against the run made under this version: the same
    numbers to float rounding (1e-5, relative and absolute: another CPU's kernels round
    differently, and 400 steps amplify it; measured on an AMD EPYC host against the recording:
    at most 2.2e-6 relative on a loss, 1.9e-6 absolute on grad_alignment); against the other
    version's: accuracies equal, and losses, weight norm and progress measures within 1e-4
    (measured: at most 2.2e-5 apart)."""
    run = load_run(DATA / "tl3")
    again = train(run.task, fixture_config(), out=tmp_path / "again", progress=False)
    here = "tl4" if backend.BRIDGE else "tl3"
    for version in VERSIONS:
        recorded = load_run(DATA / version).metrics
        assert [r["step"] for r in again.metrics] == [r["step"] for r in recorded]
        tol = 1e-5 if version == here else 1e-4
        for row, ref in zip(again.metrics, recorded):
            for key, value in ref.items():
                if key == "time":
                    continue
                exact = key.endswith("_acc") or key.endswith("_mrr") or key == "step"
                atol = 0.0 if exact else tol
                torch.testing.assert_close(
                    row[key], value, rtol=atol, atol=atol, msg=f"{version} {key} {row['step']}"
                )


def test_the_shipped_runs_load_and_their_configs_read_back(tmp_path):
    for name in ("composition", "modular"):
        stored = json.loads((SHIPPED / name / "model_config.json").read_text())
        cfg = backend.config_from_dict(stored)  # a file holding every HookedTransformer field
        for key, value in backend.config_to_dict(cfg).items():
            if key in stored:
                assert value == stored[key], (name, key)
        if not backend.BRIDGE:  # read as HookedTransformerConfig itself reads it
            from transformer_lens import HookedTransformerConfig

            full = HookedTransformerConfig.from_dict(
                {**stored, "dtype": torch.float32, "device": cfg.device}
            )
            assert full.to_dict() == cfg.to_dict()


def test_weights_round_trip_in_hooked_transformer_format(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=4)
    weights = model_weights(model)
    shipped = load_file(str(next((SHIPPED / "composition" / "checkpoints").iterdir())))
    assert {k.split(".", 2)[-1] for k in weights} <= {k.split(".", 2)[-1] for k in shipped}
    other = backend.load_weights(build_model(model.cfg, seed=5), weights)
    for name, value in model_weights(other).items():
        assert torch.equal(value, weights[name]), name
    with pytest.raises(ValueError):
        backend.load_weights(other, {k: v for k, v in weights.items() if "W_U" not in k})


def test_models_built_from_one_config_do_not_share_its_device(tiny_composition):
    # a run's CPU model and GPU model come from the same config object; moving one rewrote the
    # other's cfg.device, so it fed its inputs to the wrong device
    cfg = model_config(tiny_composition, "tiny")
    on_cpu, moved = build_model(cfg, seed=0), build_model(cfg, seed=0, device="meta")
    assert str(moved.cfg.device) == "meta"
    assert str(on_cpu.cfg.device) == "cpu" and str(cfg.device) in ("None", "cpu")
    assert on_cpu(tiny_composition.train.tokens[:4]).shape[0] == 4


def test_b_u_is_a_trainable_parameter(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    b_u = dict(backend.named_parameters(model))["unembed.b_U"]
    assert b_u.requires_grad
    answer_loss(model, tiny_composition.train.select(slice(0, 32))).backward()
    assert b_u.grad is not None and b_u.grad.abs().sum() > 0


def test_weight_decay_follows_the_parameter_name(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    decay, no_decay = backend.param_groups(model)
    names = {id(p): n for n, p in backend.named_parameters(model)}
    leaves = lambda ps: sorted({names[id(p)].rsplit(".", 1)[1] for p in ps})  # noqa: E731
    assert leaves(decay) == ["W_E", "W_K", "W_O", "W_Q", "W_U", "W_V", "W_in", "W_out", "W_pos"] + [
        "b_K",
        "b_Q",
        "b_V",
    ]
    assert leaves(no_decay) == ["b", "b_O", "b_U", "b_in", "b_out", "w"]
    groups = make_optimizer(model, fixture_config()).param_groups
    assert [len(g["params"]) for g in groups] == [len(decay), len(no_decay)]
    if not backend.BRIDGE:  # 3.x: exactly the rule every earlier run was trained with
        assert decay == [p for p in model.parameters() if p.dim() >= 2]
        assert no_decay == [p for p in model.parameters() if p.dim() < 2]


@pytest.mark.skipif(backend.BRIDGE, reason="compares with HookedTransformer (TransformerLens 3.x)")
@pytest.mark.parametrize(
    "overrides",
    [{}, {"normalization_type": None, "n_layers": 1, "act_fn": "relu"}, {"attn_only": True}],
)
def test_the_3x_layout_and_initial_weights_are_hooked_transformers(tiny_composition, overrides):
    from transformer_lens import HookedTransformer

    cfg = model_config(tiny_composition, "tiny", **overrides)
    with torch.random.fork_rng(devices=[]):
        torch.manual_seed(7)
        model = HookedTransformer(cfg, move_to_device=False)
        torch.manual_seed(7)
        reference = backend.reference_init(cfg)
    params = [(n, tuple(p.shape)) for n, p in model.named_parameters()]
    assert backend.tl3_layout(cfg) == params
    for name, p in model.named_parameters():
        assert torch.equal(reference[name], p.detach()), name


def test_midway_start_only_where_past_kv_cache_is_honoured(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    assert backend.supports_midway_start(model) is (not backend.BRIDGE)


def test_fields_that_do_not_carry_over_are_refused(tiny_composition):
    with pytest.raises(ValueError, match="use_attn_result"):
        model_config(tiny_composition, "tiny", use_attn_result=True)
    if backend.BRIDGE:
        with pytest.raises(ValueError, match="positional_embedding_type"):
            model_config(tiny_composition, "tiny", positional_embedding_type="rotary")


def test_edge_scores_and_faithfulness_equal_those_recorded_under_both_versions(fixture_run):
    # 3.x computes them through HookedTransformer's own per-head q/k/v inputs, 4.x through
    # backend.split_qkv_hooks: each version must give the other's recording
    version, run = fixture_run
    model = run.model(STEPS, device="cpu")
    expected = load_file(str(DATA / version / "edges.safetensors"))
    got = edge_reference(model, run.task)
    assert set(got) == set(expected)
    for name, value in expected.items():
        torch.testing.assert_close(got[name], value, rtol=1e-4, atol=1e-4, msg=name)


def test_the_edge_graph_is_offered_on_both_backends(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny"))
    assert backend.supports_edge_graph(model)
    assert not backend.supports_edge_graph(object())


@pytest.mark.skipif(not backend.BRIDGE, reason="the emulated q/k/v inputs exist on 4.x only")
def test_emulated_qkv_inputs_leave_the_forward_pass_and_split_its_gradient(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny", n_layers=2), seed=3).eval()
    generator = torch.Generator().manual_seed(0)
    with torch.no_grad():  # LayerNorm weights and biases away from their initial 1 and 0
        for name, p in backend.named_parameters(model):
            if ".ln" in name or ".b_" in name:
                p.add_(0.3 * torch.randn(p.shape, generator=generator))
    tokens = tiny_composition.train.tokens[:16]
    inputs = [f"blocks.{layer}.hook_{x}_input" for layer in range(2) for x in "qkv"]
    seen = []

    def look(act, hook):
        seen.append((hook.name, tuple(act.shape)))
        return act

    with model.hooks(fwd_hooks=backend.split_qkv_hooks(model, [(n, look) for n in inputs])):
        hooked = model(tokens)
    torch.testing.assert_close(hooked, model(tokens), rtol=0, atol=1e-6)
    n, pos, d = tokens.shape[0], tokens.shape[1], model.cfg.d_model
    assert seen == [(name, (n, pos, model.cfg.n_heads, d)) for name in inputs]

    # summed over heads and q, k, v, the inputs' gradient is the gradient that reaches the
    # attention through ln1 (TransformerLens' ln1.hook_in, on a copy of the residual stream)
    grads = {}

    def leaf(act, hook):
        return act.detach().requires_grad_(True)

    def keep(act, hook, name):
        act = act.clone()
        act.register_hook(lambda g: grads.__setitem__(name, g))
        return act

    wanted = [(f"blocks.1.hook_{x}_input", functools.partial(keep, name=x)) for x in "qkv"]
    with model.hooks(
        fwd_hooks=[("blocks.0.hook_resid_pre", leaf)] + backend.split_qkv_hooks(model, wanted)
    ):
        model(tokens).sum().backward()
    ours = sum(grads[x].sum(2) for x in "qkv")
    with model.hooks(
        fwd_hooks=[
            ("blocks.0.hook_resid_pre", leaf),
            ("blocks.1.ln1.hook_in", functools.partial(keep, name="ln1")),
        ]
    ):
        model(tokens).sum().backward()
    torch.testing.assert_close(ours, grads["ln1"], rtol=1e-5, atol=1e-5)
