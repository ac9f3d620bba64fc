"""A task of the user's own, defined here with the public API only, goes through training and
every run-level analysis: train -> compare_stages -> over_checkpoints -> circuit_reuse, and
analyze(run) / the CLI read what it registered.

The task: "shift", ``<e_x> <r_k> -> <e_{(x + k) mod n}>``. Its swaps change ``x`` or ``k``
(the answer always changes, as every ``x`` and every ``k`` maps to a different answer), and its
lens target is the answer at the ``k`` position.
"""

import dataclasses

import numpy as np
import pytest
import torch

import grok_circuits as gc
from grok_circuits import Split, TaskData, TrainConfig, Vocab
from grok_circuits.tasks import task_names


@dataclasses.dataclass(frozen=True)
class ShiftParams:
    n: int = 11
    shifts: int = 3
    frac_train: float = 0.6
    seed: int = 0

    def to_dict(self):
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d):
        return cls(**d)


def make_shift(p: ShiftParams) -> TaskData:
    vocab = Vocab(n_entities=p.n, n_relations=p.shifts)
    x, k = np.meshgrid(np.arange(p.n), np.arange(p.shifts), indexing="ij")
    x, k = x.ravel(), k.ravel()
    tokens = torch.tensor(np.stack([vocab.entity_offset + x, vocab.relation_offset + k], 1))
    answers = torch.tensor(vocab.entity_offset + (x + k) % p.n)
    everything = Split(tokens, torch.ones(len(x), dtype=torch.long), answers)
    order = torch.randperm(len(x), generator=torch.Generator().manual_seed(p.seed))
    cut = round(p.frac_train * len(x))
    train, test = everything.select(order[:cut].sort().values), everything.select(order[cut:])
    return TaskData(
        name="shift",
        params=p,
        vocab=vocab,
        splits={"train": train, "train_inferred": train, "test_id": test},
        positions={"x": 0, "k": 1},
        key_probes={"train": "train_inferred", "id": "test_id"},
    )


def swap_shift(token: str, task: TaskData, s: Split, g: torch.Generator, *, facts="id"):
    v, n = task.vocab, task.vocab.n_entities
    size = n if token == "x" else v.n_relations
    offset = v.entity_offset if token == "x" else v.relation_offset
    pos = task.positions[token]
    old = s.tokens[:, pos] - offset
    new = (old + torch.randint(1, size, (len(s),), generator=g)) % size  # never the same
    corrupt = s.tokens.clone()
    corrupt[:, pos] = new + offset
    x = corrupt[:, 0] - v.entity_offset
    k = corrupt[:, 1] - v.relation_offset
    return corrupt, v.entity_offset + (x + k) % n, torch.ones(len(s), dtype=torch.bool)


def lens_shift(task: TaskData, s: Split):
    return {"answer@k": (s.answers, torch.ones(len(s), dtype=torch.long))}


@pytest.fixture(scope="module")
def registered():
    gc.register_task(
        "shift",
        ShiftParams,
        {"tutorial": ShiftParams()},
        make_shift,
        swaps={t: (lambda *a, t=t, **kw: swap_shift(t, *a, **kw)) for t in ("x", "k")},
        default_swap="x",
        lens_targets=lens_shift,
        train_presets={"tutorial": TrainConfig(max_steps=80, batch_size=None, model_size="tiny")},
    )
    return gc.make_task("shift")


@pytest.fixture(scope="module")
def run(registered, tmp_path_factory):
    cfg = dataclasses.replace(
        gc.train_config("shift"), device="cpu", eval_every=20, dense_until=80, lr=3e-3
    )
    return gc.train(registered, cfg, out=tmp_path_factory.mktemp("shift"), progress=False)


def test_registration_makes_it_first_class(registered):
    assert "shift" in task_names()
    assert registered.stats()["train"] == round(0.6 * 33)
    pairs = gc.make_pairs(registered, "k", n_examples=10, seed=1)
    assert pairs.pos_labels == ("x", "k") and pairs.swap == "k" and pairs.position == 1
    n = registered.vocab.n_entities
    ent, rel = registered.vocab.entity_offset, registered.vocab.relation_offset
    for clean, corrupt, a, b in zip(
        pairs.clean, pairs.corrupt, pairs.answers, pairs.corrupt_answers
    ):
        assert clean[0] == corrupt[0] and clean[1] != corrupt[1]
        assert int(b) - ent == (int(corrupt[0]) - ent + int(corrupt[1]) - rel) % n != int(a) - ent


def test_train_and_the_run_level_analyses(run, registered):
    assert run.steps == [0, 20, 40, 60, 80]
    assert run.task.fingerprint() == registered.fingerprint()
    st = gc.compare_stages(run, memorizing=20, generalizing=80, n_examples=20)
    assert (st.memorizing_step, st.generalizing_step) == (20, 80)
    assert st.difference.shape == (run.model_cfg.n_layers, 2)
    assert st.generalizing.lens.names == ("answer@k",)

    # over_checkpoints against the obvious loop over the same checkpoints
    pairs = gc.make_pairs(registered, n_examples=15)
    over = gc.over_checkpoints(run, lambda m: gc.trace_reasoning(m, pairs), progress=False)
    assert over.steps == tuple(run.steps)
    for step in run.steps:
        direct = gc.trace_reasoning(run.model(step), pairs)
        torch.testing.assert_close(over[step].strength.scores, direct.strength.scores)
        torch.testing.assert_close(over[step].lens.mrr, direct.lens.mrr)
    curve = over.stack(lambda t: t.lens.mrr[-1, 0])
    assert (
        curve.shape == (5,) and list(over.to_frame(lambda t: t.lens.mrr[-1, 0]).index) == run.steps
    )

    # circuit reuse of the two swaps' data on the last model
    a = gc.make_pairs(registered, "x", n_examples=20)
    b = gc.make_pairs(registered, "k", n_examples=20)
    report = gc.circuit_reuse(
        run.model(), a, b, names=("x", "k"), top_k=2, n_random=50, n_random_ablations=2
    )
    assert report.tasks == ("x", "k") and report.eval_split == "pairs"
    assert report.n_eval == {"x": len(gc.analysis.circuits.find.distinct_clean([a])), "k": 20}
    assert len(report.circuits["x"]) == 2 == len(report.circuits["k"])


def test_analyze_and_the_cli_read_what_it_registered(run, tmp_path, capsys):
    result = gc.analyze(run, n_examples=10, top_k=2)
    assert "circuit" in result.results and "fourier" not in result.results
    paths = result.save(tmp_path / "fig")
    assert all(p.read_bytes()[:4] == b"\x89PNG" for p in paths)
    from grok_circuits.cli import main

    assert main(["report", str(run.path), "--png", str(tmp_path / "c.png")]) == 0
    assert "shift" in capsys.readouterr().out


def test_over_checkpoints_skips_a_damaged_checkpoint_with_one_warning(run, tmp_path):
    import shutil
    import warnings

    copy = tmp_path / "copy"
    shutil.copytree(run.path, copy)
    damaged = copy / "checkpoints" / "step_0000040.safetensors"
    damaged.write_bytes(damaged.read_bytes()[:100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        again = gc.load_run(copy)
        over = gc.over_checkpoints(again, lambda m: float(m.W_E.sum()), progress=False)
    assert 40 not in over.steps and over.steps == (0, 20, 60, 80)
    assert sum("40" in str(w.message) for w in caught) == 1
    for step in over.steps:  # the others are read as they are
        assert over[step] == pytest.approx(float(run.model(step).W_E.sum()))
    frame = over.to_frame()
    assert list(frame.index) == [0, 20, 60, 80]
