"""The backend layer: the same model, weights and training on TransformerLens 3.x
(``HookedTransformer``) and 4.x (``TransformerBridge``), a protocol every backend meets, and
capabilities that answer as TransformerLens itself does.

Cross-version guarantees are checked against runs trained under each version and shipped in
``tests/data/cross_version/tl3`` and ``tl4`` (made by ``tests/data/make_cross_version.py``): the
suite runs under both (``tests/run_both.sh``), so each version loads the other's run. The 3.x
specifics are checked against ``HookedTransformer`` itself."""

import functools
import json
import types
from pathlib import Path
from typing import get_args

import pytest
import torch
from safetensors.torch import load_file

from grok_circuits import backend, load_run, train
from grok_circuits.analysis import causal_trace, make_counterfactuals
from grok_circuits.analysis.patching.causal_trace import _can_start_midway
from grok_circuits.backend.protocol import MEMBERS, missing_members
from grok_circuits.model import build_model, model_config, model_weights
from grok_circuits.training.loop import answer_loss, make_optimizer
from tests.data.make_cross_version import FOLDERS, STEPS, edge_reference, fixture_config

DATA = Path(__file__).parents[1] / "data" / "cross_version"
SHIPPED = Path(__file__).parents[2] / "data" / "runs"
VERSIONS = ("tl3", "tl4")
#: Whether the models are ``HookedTransformer`` itself, which then serves as the reference.
IS_HOOKED = backend.model_class().__name__ == "HookedTransformer"


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
    here = FOLDERS[backend.BACKEND]
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
        if IS_HOOKED:  # read as HookedTransformerConfig itself reads it
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
    if IS_HOOKED:  # 3.x: exactly the rule every earlier run was trained with
        assert decay == [p for p in model.parameters() if p.dim() >= 2]
        assert no_decay == [p for p in model.parameters() if p.dim() < 2]


@pytest.mark.skipif(not IS_HOOKED, reason="compares with HookedTransformer (TransformerLens 3.x)")
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


def test_fields_that_do_not_carry_over_are_refused(tiny_composition):
    with pytest.raises(ValueError, match="use_attn_result"):
        model_config(tiny_composition, "tiny", use_attn_result=True)


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


@pytest.mark.skipif(
    backend.supports("split_qkv_input"), reason="the q/k/v inputs are the model's own here"
)
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


# ----------------------------------------------------------------------------- the protocol
def test_every_registered_backend_has_every_member_of_the_protocol():
    assert list(backend.BACKENDS) == ["HookedTransformer", "TransformerBridge"]
    for name, candidate in backend.BACKENDS.items():
        assert isinstance(candidate, backend.Backend), name
        assert missing_members(candidate) == [], name
        assert candidate.NAME == name
        for member in MEMBERS[1:]:
            assert callable(getattr(candidate, member)), (name, member)
        for capability in backend.CAPABILITIES:  # every question answered, for any model
            assert candidate.supports(capability) in (True, False), (name, capability)
    assert set(backend.CAPABILITIES) == set(get_args(backend.Capability))
    # the package offers every function of the active backend under the same name
    for member in MEMBERS[2:]:
        assert callable(getattr(backend, member)), member
    assert backend.BACKEND == backend.active().NAME


def test_the_backend_is_selected_by_the_installed_version():
    # 4.0 removed HookedTransformer's from-scratch path: the bridge from there on
    assert backend.select("3.9.0") is backend.hooked
    assert backend.select("4.0.0") is backend.bridge
    assert backend.select("4.3.0") is backend.bridge
    assert backend.select(backend.TL_VERSION) is backend.active()
    assert type(
        build_model(
            backend.make_config(
                n_layers=1, d_model=8, n_heads=1, d_head=8, d_vocab=5, n_ctx=3, act_fn="relu"
            )
        )
    ) is (backend.model_class())


def test_unknown_names_are_one_clear_error():
    with pytest.raises(ValueError, match="unknown capability 'kv'.*midway_start"):
        backend.supports("kv")
    with pytest.raises(ValueError, match="no backend 'nope'; registered"):
        with backend.use_backend("nope"):
            pass
    with pytest.raises(TypeError, match=r"lacks \['NAME', 'handles'"):
        backend.register_backend(object())
    only_bridge = {"TransformerBridge": backend.bridge}
    with pytest.MonkeyPatch.context() as patch:
        patch.setattr(backend, "BACKENDS", only_bridge)
        with pytest.raises(RuntimeError, match="handles TransformerLens 3.9.0 .*TransformerBridge"):
            backend.select("3.9.0")
    assert not backend.supports("edge_graph", object())  # not a model: no capability


def _toy_backend(base):
    """A third backend, the whole of it: ``base``'s functions under another name, for
    TransformerLens "99.x", with neither a mid-way start nor an edge graph."""
    toy = types.ModuleType("toy_backend")
    for member in MEMBERS:
        setattr(toy, member, getattr(base, member))
    toy.NAME = "Toy"
    toy.handles = lambda tl_version: tl_version.startswith("99.")
    toy.supports = lambda capability, model=None: (
        capability
        not in (
            "midway_start",
            "edge_graph",
        )
        and base.supports(capability, model)
    )
    toy.calls = []
    toy.forward_midway = lambda *args: toy.calls.append(args) or base.forward_midway(*args)
    return toy


def test_a_third_backend_is_one_module_registered_by_name(tiny_composition):
    model = build_model(model_config(tiny_composition, "tiny", n_layers=3), seed=1).eval()
    pairs = make_counterfactuals(tiny_composition, "r1", n_examples=16, seed=0)
    rows = torch.arange(len(pairs.clean))

    def metric(logits):
        return logits[rows, pairs.answer_pos, pairs.answers].mean()

    expected = causal_trace(model, pairs.clean, pairs.corrupt, metric, direction="denoise")
    active = backend.active()
    toy = backend.register_backend(_toy_backend(active))
    try:
        assert backend.select("99.1") is toy
        assert backend.select(backend.TL_VERSION) is active  # registering selects nothing
        with backend.use_backend("Toy"):
            assert backend.BACKEND == "Toy" and backend.active() is toy
            assert not backend.supports("midway_start", model)
            assert not _can_start_midway(model)
            trace = causal_trace(model, pairs.clean, pairs.corrupt, metric, direction="denoise")
            with pytest.raises(NotImplementedError, match="edge graph"):
                with backend.edge_hooks(model):
                    pass
        assert toy.calls == []  # the analysis asked the capability and took the full passes
        torch.testing.assert_close(trace.scores, expected.scores, rtol=1e-5, atol=1e-5)
        assert backend.active() is active
    finally:
        del backend.BACKENDS["Toy"]


# ----------------------------------------------------------------------------- capabilities
def test_per_head_hook_points_answer_as_transformer_lens_does(tiny_composition):
    """``split_qkv_input`` and ``attn_result``: TransformerLens' own switch accepts the setting
    (the 4.3 bridge raises NotImplementedError for this attention) and the hook point then
    fires with a ``[batch, pos, head, d_model]`` activation."""
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    tokens = tiny_composition.train.tokens[:4]
    for capability, switch, point in [
        ("split_qkv_input", "set_use_split_qkv_input", "blocks.1.hook_k_input"),
        ("attn_result", "set_use_attn_result", "blocks.1.attn.hook_result"),
    ]:
        seen = []
        try:
            getattr(model, switch)(True)
        except NotImplementedError:
            tl_says = False
        else:
            with (
                torch.no_grad(),
                model.hooks(fwd_hooks=[(point, lambda a, hook, seen=seen: seen.append(a))]),
            ):
                model(tokens)
            getattr(model, switch)(False)
            tl_says = [tuple(a.shape) for a in seen] == [(4, 3, 2, 32)]
        assert backend.supports(capability, model) is tl_says, capability


def test_midway_start_answers_as_transformer_lens_does(tiny_composition):
    """TransformerLens' own forward pass from block 1 on the last position, the first two
    positions' keys and values in its frozen key-value cache, gives the full pass's logits
    exactly where the backend says it starts mid-way; ``forward_midway`` gives them too."""
    from transformer_lens import TransformerLensKeyValueCache as Cache
    from transformer_lens import TransformerLensKeyValueCacheEntry as Entry

    model = build_model(model_config(tiny_composition, "tiny"), seed=2).eval()
    tokens, layer, start = tiny_composition.train.tokens[:8], 1, 2
    with torch.no_grad():
        full, cache = model.run_with_cache(tokens)
        past = [
            (
                cache[f"blocks.{i}.attn.hook_k"][:, :start],
                cache[f"blocks.{i}.attn.hook_v"][:, :start],
            )
            for i in range(layer, model.cfg.n_layers)
        ]
        kv = Cache(
            entries=[None] * layer
            + [Entry(past_keys=k, past_values=v, frozen=True) for k, v in past],
            previous_attention_mask=torch.ones(len(tokens), start, dtype=torch.int),
            frozen=True,
        )
        resid = cache[f"blocks.{layer}.hook_resid_pre"][:, start:]
        theirs = model(resid, start_at_layer=layer, past_kv_cache=kv)
        tl_says = theirs.shape == full[:, start:].shape and torch.allclose(
            theirs, full[:, start:], atol=1e-5
        )
        assert backend.supports("midway_start", model) is tl_says
        if tl_says:
            ours = backend.forward_midway(model, resid, layer, past)
            torch.testing.assert_close(ours, full[:, start:], rtol=1e-5, atol=1e-5)
        else:
            with pytest.raises(NotImplementedError, match="midway_start"):
                backend.forward_midway(model, resid, layer, past)


def test_the_edge_graph_hooks_are_there_where_the_capability_says(tiny_composition):
    """Under ``edge_hooks``, hooks on every per-head q/k/v input (through ``split_qkv_hooks``)
    and every MLP input, all of them TransformerLens hook points (``model.hook_dict``), fire
    once with the input's shape; the settings are restored afterwards."""
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    assert backend.supports("edge_graph", model)
    layers = range(model.cfg.n_layers)
    names = [f"blocks.{i}.hook_{x}_input" for i in layers for x in "qkv"]
    names += [f"blocks.{i}.hook_mlp_in" for i in layers]
    assert set(names) <= set(model.hook_dict)
    before = (getattr(model.cfg, "use_split_qkv_input", False), model.cfg.use_hook_mlp_in)
    seen = {}

    def record(act, hook):
        seen[hook.name] = tuple(act.shape)

    tokens = tiny_composition.train.tokens[:4]
    with backend.edge_hooks(model), torch.no_grad():
        with model.hooks(fwd_hooks=backend.split_qkv_hooks(model, [(n, record) for n in names])):
            model(tokens)
    per_head, whole = (4, 3, model.cfg.n_heads, 32), (4, 3, 32)
    assert seen == {n: per_head if n.endswith("_input") else whole for n in names}
    assert (getattr(model.cfg, "use_split_qkv_input", False), model.cfg.use_hook_mlp_in) == before


def test_all_architectures_answers_whether_a_rotary_model_builds(tiny_composition):
    rotary = dict(positional_embedding_type="rotary", rotary_dim=16)
    if backend.supports("all_architectures"):
        model = build_model(model_config(tiny_composition, "tiny", **rotary))
        assert model.cfg.positional_embedding_type == "rotary"
    else:
        with pytest.raises(ValueError, match="positional_embedding_type"):
            model_config(tiny_composition, "tiny", **rotary)


# ----------------------------------------------------------------------------- fused LayerNorm
def _count_fused(monkeypatch) -> list:
    """Every call of ``torch.nn.functional.layer_norm``, the fused kernel, recorded."""
    calls: list = []
    real = torch.nn.functional.layer_norm

    def counting(*args, **kwargs):
        calls.append(args[0].shape)
        return real(*args, **kwargs)

    monkeypatch.setattr(torch.nn.functional, "layer_norm", counting)
    return calls


def test_fused_layer_norm_computes_the_same_function_and_leaves_hooked_norms_alone(
    tiny_composition, monkeypatch
):
    """Inside the context every LayerNorm without hooks goes through the fused kernel (counted
    call by call), with the logits and gradients of TransformerLens' own arithmetic; a
    LayerNorm whose hook point has a hook keeps its arithmetic, and the hook fires."""
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    batch = tiny_composition.train.sample(64, seed=0)
    calls = _count_fused(monkeypatch)
    norm_calls: list = []  # each call of a LayerNorm module (3.x calls ln1 once for q, k and v)
    for module in model.modules():
        if hasattr(module, "hook_normalized"):
            module.register_forward_pre_hook(lambda mod, args: norm_calls.append(mod))

    def loss_and_grads():
        model.zero_grad()
        loss = answer_loss(model, batch)
        loss.backward()
        return loss.detach(), [p.grad.clone() for p in backend.parameters(model)]

    plain_loss, plain_grads = loss_and_grads()
    assert calls == []  # TransformerLens computes LayerNorm step by step
    n_norms = len(norm_calls)
    assert n_norms >= 2 * model.cfg.n_layers + 1  # ln1 and ln2 per block, ln_final
    with backend.fused_layer_norm(model):
        fused_loss, fused_grads = loss_and_grads()
    assert len(calls) == n_norms
    torch.testing.assert_close(fused_loss, plain_loss, rtol=1e-5, atol=1e-6)
    for a, b in zip(fused_grads, plain_grads):
        torch.testing.assert_close(a, b, rtol=1e-4, atol=1e-6)

    calls.clear()
    loss_and_grads()
    assert calls == []  # restored

    seen = []
    model.ln_final.hook_normalized.add_hook(lambda act, hook: seen.append(act.shape))
    try:
        with backend.fused_layer_norm(model):
            loss_and_grads()
    finally:
        model.reset_hooks()
    assert len(calls) == n_norms - 1 and len(seen) == 1  # ln_final kept its hook point

    calls.clear()
    with pytest.raises(RuntimeError, match="inside"):
        with backend.fused_layer_norm(model):
            raise RuntimeError("inside")
    loss_and_grads()
    assert calls == []  # restored on error too
