"""Training plug-ins: each against its formula written out here, exact resume with each on, old
runs, and the two extension points."""

import json
import math

import pytest
import torch

from grok_circuits import TrainConfig, backend, load_run, register_grad_hook, register_loss, train
from grok_circuits.runs.run import CheckpointStore
from grok_circuits.training.plugins import (
    GRAD_HOOKS,
    LOSSES,
    GrokfastEMA,
    GrokfastMA,
    OrthoGrad,
    grad_hooks_for,
    loss_for,
    stablemax,
    stablemax_cross_entropy,
)
from tests.helpers import straight_and_resumed, tiny_train_config, without_time

PLUGIN_FIELDS = [
    "loss",
    "loss_float64",
    "grad_filter",
    "grad_filter_alpha",
    "grad_filter_window",
    "grad_filter_lamb",
    "orthograd",
    "grad_hooks",
]


def _random_logits(seed: int, shape=(6, 9)) -> tuple[torch.Tensor, torch.Tensor]:
    g = torch.Generator().manual_seed(seed)
    logits = torch.randn(shape, generator=g) * 3
    logits[0, :3] = torch.tensor([0.0, 1.0, -1.0])  # the branch point and its neighbours
    return logits, torch.randint(0, shape[1], (shape[0],), generator=g)


def _s(x: float) -> float:
    return x + 1 if x >= 0 else 1 / (1 - x)


def test_stablemax_cross_entropy_is_its_formula():
    logits, targets = _random_logits(0)
    expected = []
    for row, t in zip(logits.tolist(), targets.tolist()):
        expected.append(-math.log(_s(row[t]) / sum(_s(x) for x in row)))
    got = stablemax_cross_entropy(logits, targets)
    assert got.dtype == torch.float64  # as in the authors' code
    torch.testing.assert_close(
        got, torch.tensor(sum(expected) / len(expected), dtype=torch.float64)
    )
    p = stablemax(logits.double())
    torch.testing.assert_close(p.sum(-1), torch.ones(len(logits), dtype=torch.float64))
    assert p[0, 1] / p[0, 0] == pytest.approx(2.0) and p[0, 2] / p[0, 0] == pytest.approx(0.5)


def test_stablemax_gradient_is_finite_at_the_branch_point():
    logits = torch.tensor([[1.0, 0.0, -1.0, 5.0]], requires_grad=True)
    stablemax_cross_entropy(logits, torch.tensor([0])).backward()
    assert torch.isfinite(logits.grad).all()


def test_float64_loss_is_transformer_lens_demo_loss():
    logits, targets = _random_logits(1)
    got = loss_for(TrainConfig(loss_float64=True))(logits, targets)
    # TransformerLens' grokking demo: log_softmax of float64 logits, gathered, negated, averaged
    log_probs = logits.to(torch.float64).log_softmax(dim=-1)
    expected = -log_probs.gather(-1, targets[:, None])[:, 0].mean()
    assert got.dtype == torch.float64
    torch.testing.assert_close(got, expected, rtol=0, atol=1e-12)


def _grad_sequence(n_steps: int, seed: int = 0) -> tuple[list[torch.Tensor], list[list]]:
    g = torch.Generator().manual_seed(seed)
    params = [torch.randn(3, 4, generator=g), torch.randn(5, generator=g)]
    grads = [[torch.randn(p.shape, generator=g) for p in params] for _ in range(n_steps)]
    return params, grads


def _apply(hook, params, grads_per_step) -> list[list[torch.Tensor]]:
    out = []
    for grads in grads_per_step:
        ps = [p.clone().requires_grad_() for p in params]
        for p, g in zip(ps, grads):
            p.grad = g.clone()
        hook(ps)
        out.append([p.grad.clone() for p in ps])
    return out


def test_grokfast_ema_is_its_formula():
    params, grads = _grad_sequence(6)
    alpha, lamb = 0.9, 3.0
    got = _apply(GrokfastEMA(alpha, lamb), params, grads)
    ema = None
    for step, g_step in enumerate(grads):
        expected = []
        for i, g in enumerate(g_step):
            if ema is None or len(ema) <= i:
                ema = (ema or []) + [g.clone()]  # starts at the first gradient
            else:
                ema[i] = alpha * ema[i] + (1 - alpha) * g
            expected.append(g + lamb * ema[i])
        for a, b in zip(got[step], expected):
            torch.testing.assert_close(a, b)


def test_grokfast_ma_is_its_formula():
    params, grads = _grad_sequence(7)
    window, lamb = 3, 5.0
    got = _apply(GrokfastMA(window, lamb), params, grads)
    for step, g_step in enumerate(grads):
        for i, g in enumerate(g_step):
            if step + 1 < window:
                expected = g  # off until the window is full
            else:
                last = [grads[s][i] for s in range(step - window + 1, step + 1)]
                expected = g + lamb * sum(last) / window
            torch.testing.assert_close(got[step][i], expected)


@pytest.mark.parametrize("hook", [GrokfastEMA(), GrokfastMA(window=2)], ids=["ema", "ma"])
def test_grokfast_names_a_parameter_without_a_gradient(hook):
    params = [torch.ones(2, requires_grad=True), torch.ones(3, requires_grad=True)]
    params[0].grad = torch.ones(2)  # the second parameter took no part in the loss
    with pytest.raises(ValueError, match=r"parameter\(s\) \[1\].*have none"):
        hook(params)


def test_orthograd_removes_the_component_along_the_weights_and_keeps_the_norm():
    params, grads = _grad_sequence(1, seed=3)
    got = _apply(OrthoGrad(), params, grads)[0]
    for w, g, new in zip(params, grads[0], got):
        w64, g64 = w.double().flatten(), g.double().flatten()
        perp = g64 - (w64 @ g64) / (w64 @ w64) * w64
        expected = perp / perp.norm() * g64.norm()
        torch.testing.assert_close(new.double().flatten(), expected, rtol=1e-5, atol=1e-6)
        assert abs(float(new.flatten() @ w.flatten())) < 1e-4


@pytest.mark.parametrize(
    "plugins",
    [
        dict(grad_filter="ema"),
        dict(grad_filter="ma", grad_filter_window=3),
        dict(loss="stablemax"),
        dict(orthograd=True),
        dict(loss_float64=True),
    ],
    ids=["ema", "ma", "stablemax", "orthograd", "float64"],
)
def test_resume_is_exact_with_each_plugin(tiny_composition, tmp_path, plugins):
    full, resumed = straight_and_resumed(tiny_composition, tmp_path, 40, 20, **plugins)
    assert without_time(resumed.metrics) == without_time(full.metrics)
    for a, b in zip(full.model(40).state_dict().values(), resumed.model(40).state_dict().values()):
        torch.testing.assert_close(a, b, rtol=0, atol=0)
    plain = train(
        tiny_composition, tiny_train_config(max_steps=40), out=tmp_path / "plain", progress=False
    )
    assert without_time(plain.metrics) != without_time(full.metrics)  # the plug-in did something


def test_filter_state_is_in_the_checkpoint(tiny_composition, tmp_path):
    train(
        tiny_composition,
        tiny_train_config(max_steps=20, grad_filter="ema"),
        out=tmp_path / "r",
        progress=False,
    )
    step, _, state = CheckpointStore(tmp_path / "r").latest_resumable()
    (ema,) = state["grad_hooks"]
    n_params = len(list(load_run(tmp_path / "r").model(20).parameters()))
    assert step == 20 and len(ema["ema"]) == n_params


def test_old_runs_without_the_plugin_fields_load_and_resume(tiny_composition, tmp_path):
    cfg = tiny_train_config(max_steps=40)
    full = train(tiny_composition, cfg, out=tmp_path / "full", progress=False)
    train(tiny_composition, tiny_train_config(max_steps=20), out=tmp_path / "old", progress=False)
    path = tmp_path / "old" / "train_config.json"
    stored = json.loads(path.read_text())
    path.write_text(json.dumps({k: v for k, v in stored.items() if k not in PLUGIN_FIELDS}))
    assert load_run(tmp_path / "old").train_cfg == tiny_train_config(max_steps=20)
    resumed = train(tiny_composition, cfg, out=tmp_path / "old", resume=True, progress=False)
    assert [r["test_id_acc"] for r in resumed.metrics] == [r["test_id_acc"] for r in full.metrics]


@pytest.mark.parametrize(
    "change", [dict(grad_filter="ema"), dict(loss="stablemax"), dict(orthograd=True)]
)
def test_resume_refuses_to_change_a_plugin(tiny_composition, tmp_path, change):
    train(tiny_composition, tiny_train_config(max_steps=20), out=tmp_path / "r", progress=False)
    with pytest.raises(ValueError, match=next(iter(change))):
        train(
            tiny_composition,
            tiny_train_config(max_steps=40, **change),
            out=tmp_path / "r",
            resume=True,
            progress=False,
        )


@pytest.mark.parametrize(
    "field, value",
    [
        pytest.param("grad_filter", "sma", marks=pytest.mark.wrong_types),
        ("grad_filter_alpha", 1.0),
        ("grad_filter_window", 0),
        ("grad_filter_lamb", -1.0),
        ("loss", ""),
        pytest.param("grad_hooks", ["mine"], marks=pytest.mark.wrong_types),
    ],
)
def test_plugin_fields_validate(field, value):
    with pytest.raises(ValueError, match=f"TrainConfig.{field}"):
        TrainConfig(**{field: value})


def test_plugin_fields_round_trip():
    cfg = TrainConfig(loss="stablemax", grad_filter="ma", orthograd=True, grad_hooks=("a", "b"))
    assert TrainConfig.from_dict(json.loads(json.dumps(cfg.to_dict()))) == cfg


def test_unknown_names_fail_before_any_file_is_written(tiny_composition, tmp_path):
    for change, word in [
        (dict(loss="focal"), "register_loss"),
        (dict(grad_hooks=("x",)), "register_grad_hook"),
    ]:
        with pytest.raises(ValueError, match=word):
            train(tiny_composition, tiny_train_config(**change), out=tmp_path / "r", progress=False)
        assert not (tmp_path / "r").exists()


class _ZeroGrad:
    """A planted hook: no gradient reaches AdamW, so only weight decay moves the weights."""

    def __call__(self, params):
        for p in params:
            p.grad.zero_()

    def state_dict(self):
        return {}

    def load_state_dict(self, state):
        pass


def test_a_registered_hook_and_loss_run_in_the_loop(tiny_composition, tmp_path, monkeypatch):
    monkeypatch.setitem(GRAD_HOOKS, "zero", None)  # restored after the test
    register_grad_hook("zero", lambda cfg: _ZeroGrad())
    calls = []
    monkeypatch.setitem(LOSSES, "counted", None)

    def counted(logits, targets):
        calls.append(len(targets))
        return torch.nn.functional.cross_entropy(logits, targets)

    register_loss("counted", counted)
    cfg = tiny_train_config(
        max_steps=5, eval_every=5, grad_hooks=("zero",), loss="counted", warmup_steps=0
    )
    run = train(tiny_composition, cfg, out=tmp_path / "r", progress=False)
    assert calls.count(cfg.batch_size) == 5  # one per training step (evaluation uses others)
    before, after = backend.model_weights(run.model(0)), backend.model_weights(run.model(5))
    for name, _ in backend.named_parameters(run.model(0)):
        decayed = backend.decays(name)
        # AdamW with a zero gradient: w <- w * (1 - lr * decay) per step on decayed weights only
        factor = (1 - cfg.lr * cfg.weight_decay) ** 5 if decayed else 1.0
        torch.testing.assert_close(after[name], before[name] * factor)


def test_hooks_run_filter_then_orthograd_then_registered():
    hooks = grad_hooks_for(TrainConfig(grad_filter="ma", orthograd=True))
    assert [type(h) for h in hooks] == [GrokfastMA, OrthoGrad]
    assert grad_hooks_for(TrainConfig()) == []
    assert loss_for(TrainConfig()) is torch.nn.functional.cross_entropy  # off: the old loss
