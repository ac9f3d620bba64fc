"""The modular arithmetic task against plain-Python references: counts, answers, splits, swaps,
the Fourier spectrum of a hand-built embedding, and a tiny run through train, analyze and the
command line."""

import math

import pytest
import torch

from grok_circuits import (
    analyze,
    build_model,
    find_circuit,
    fourier_spectrum,
    load_run,
    make_pairs,
    make_task,
    model_config,
    train,
)
from grok_circuits.cli import main
from grok_circuits.tasks import ModularParams, TaskData, Vocab, load_task, op_pairs, subtasks
from tests.helpers import tiny_train_config


def reference(op: str, a: int, b: int, p: int) -> int | None:
    """``(a op b) mod p`` by a plain loop; None where division is undefined."""
    if op == "add":
        return (a + b) % p
    if op == "sub":
        return (a - b) % p
    if op == "mul":
        return (a * b) % p
    for c in range(p):  # the c with c * b == a (mod p), unique when b is invertible
        if math.gcd(b, p) == 1 and (c * b) % p == a % p:
            return c
    return None


def rows(task: TaskData, split: str) -> list[tuple[str, int, int, int]]:
    """(op, a, b, answer) of every example, decoded from the token strings alone."""
    symbols = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
    out = []
    s = task.splits[split]
    for tokens, pos, ans in zip(s.tokens.tolist(), s.answer_pos.tolist(), s.answers.tolist()):
        text = [task.vocab.tokens[t].strip("<>") for t in tokens[: pos + 1]]
        assert text[-1] == "="
        if task.params.op_token:
            a, op, b = text[0], symbols[text[1]], text[2]
        else:
            (a, b), op = text[:2], task.params.op
        out.append((op, int(a), int(b), int(task.vocab.tokens[ans].strip("<>"))))
    return out


@pytest.mark.parametrize(
    "op, p, frac",
    [("add", 7, 0.3), ("sub", 11, 0.5), ("mul", 6, 0.4), ("div", 7, 0.5), ("div", 9, 0.5)],
)
def test_counts_and_answers_by_hand(op, p, frac):
    task = make_task("modular", preset=None, p=p, op=op, frac_train=frac, seed=3)
    # div is defined where b has an inverse: gcd(b, p) == 1 (phi(9) = 6, phi(7) = 6)
    n = p * p if op != "div" else p * sum(math.gcd(b, p) == 1 for b in range(p))
    assert task.counts["pairs"] == n
    assert len(task.splits["train"]) == round(frac * n) == task.counts["train"]
    assert len(task.splits["test_id"]) == n - round(frac * n)
    train, test = rows(task, "train"), rows(task, "test_id")
    for o, a, b, c in train + test:
        assert o == op and c == reference(op, a, b, p)
    pairs = [(a, b) for _, a, b, _ in train + test]
    expected = {(a, b) for a in range(p) for b in range(p) if reference(op, a, b, p) is not None}
    assert len(pairs) == len(set(pairs)) and set(pairs) == expected  # a partition of the table
    assert rows(task, "train_inferred") == train


def test_mixed_variant_shares_one_token_set_and_splits_per_op():
    task = make_task("modular", preset=None, p=5, op="add,sub", frac_train=0.4, seed=1)
    assert task.counts["pairs"] == 2 * 25
    assert len(task.train) == 2 * round(0.4 * 25)
    for op in ("add", "sub"):
        assert len(task.splits[f"{op}.train_inferred"]) == round(0.4 * 25)
        assert {r[0] for r in rows(task, f"{op}.test_id")} == {op}
    for o, a, b, c in rows(task, "train") + rows(task, "test_id"):
        assert c == reference(o, a, b, 5)
    # one operation's split does not depend on the others asked with it
    alone = make_task("modular", preset=None, p=5, op="sub", frac_train=0.4, seed=1)
    assert [r[1:] for r in rows(alone, "train")] == [
        r[1:] for r in rows(task, "sub.train_inferred")
    ]
    views = subtasks(task)
    assert list(views) == ["add", "sub"]
    assert rows(views["sub"], "train") == rows(task, "sub.train_inferred")
    assert rows(views["add"], "test_id") == rows(task, "add.test_id")
    assert views["add"].vocab == task.vocab


def test_positions_key_probes_and_cyclic_tokens():
    task = make_task("modular", preset=None, p=13)
    assert task.positions == {"a": 0, "op": 1, "b": 2, "=": 3}
    assert task.key_probes == {"train": "train_inferred", "id": "test_id", "ood": "test_id"}
    v = task.vocab
    from grok_circuits.tasks import task_spec

    cyclic = task_spec(task).cyclic_tokens(task)
    assert [v.tokens[t] for t in cyclic] == [f"<{i}>" for i in range(task.params.p)]
    nanda = make_task("modular", preset="paper")
    assert nanda.positions == {"a": 0, "b": 1, "=": 2} and nanda.params.p == 113
    assert len(nanda.vocab) == 3 + 113 + 1  # specials, residues, "<=>"


def test_same_seed_same_data_other_seed_other_split():
    a = make_task("modular", preset=None, p=11, seed=4)
    b = make_task("modular", preset=None, p=11, seed=4)
    c = make_task("modular", preset=None, p=11, seed=5)
    assert a.fingerprint() == b.fingerprint() != c.fingerprint()
    for k in a.splits:
        assert torch.equal(a.splits[k].tokens, b.splits[k].tokens)


def test_save_and_load_round_trip(tmp_path):
    task = make_task("modular", preset=None, p=7, op="add,div", frac_train=0.5)
    loaded = load_task(task.save(tmp_path / "t"))
    assert loaded.fingerprint() == task.fingerprint() and loaded.vocab == task.vocab


@pytest.mark.parametrize(
    "params, field",
    [
        (dict(p=2), "p must be"),
        pytest.param(dict(p=7.0), "p must be", marks=pytest.mark.wrong_types),
        (dict(op="pow"), "op="),
        (dict(op="add,add"), "twice"),
        (dict(op="add,sub", op_token=False), "op_token"),
        (dict(frac_train=1.0), "frac_train"),
        (dict(p=3, frac_train=0.01), "frac_train"),
    ],
)
def test_bad_params_are_one_line_errors(params, field):
    with pytest.raises(ValueError, match=field) as err:
        ModularParams(**params)
    assert "\n" not in str(err.value)


def test_params_round_trip():
    p = ModularParams(p=13, op="mul,div", frac_train=0.6, seed=2)
    assert ModularParams.from_dict(p.to_dict()) == p
    with pytest.raises(ValueError, match="unknown ModularParams"):
        ModularParams.from_dict({**p.to_dict(), "modulus": 3})


def test_vocab_residue_blocks_and_round_trip():
    v = Vocab(n_residues=5, operators=("+", "-"))
    assert v.encode("<3> <-> <4> <=>") == [
        v.residue_offset + 3,
        v.operator_id("-"),
        v.residue_offset + 4,
        v.equals_id,
    ]
    assert v.decode(v.encode("<3><+><0><=>")) == "<3> <+> <0> <=>"
    assert Vocab.from_dict(v.to_dict()) == v
    # the other tasks' vocabularies and manifests are unchanged: no new keys, same ids
    old = {"n_entities": 4, "n_relations": 2, "n_attributes": 1, "n_values": 3}
    assert Vocab.from_dict(old).to_dict() == old
    assert Vocab.from_dict(old).tokens[-1] == "<attr_0_gt>"
    with pytest.raises(ValueError, match="operators"):
        Vocab(operators=("<",))


@pytest.mark.parametrize("op", ["add", "mul", "div", "add,sub"])
@pytest.mark.parametrize("swap", ["a", "b"])
@pytest.mark.parametrize("facts", ["id", "all"])
def test_swaps_change_the_answer_and_keep_token_types(op, swap, facts):
    p = 7
    task = make_task("modular", preset=None, p=p, op=op, frac_train=0.5, seed=0)
    pairs = make_pairs(task, swap, "test_id", facts=facts, seed=1)
    assert len(pairs) > 0 and pairs.swap == swap
    v, pos = task.vocab, task.positions
    residues = set(v.residue_ids)
    train = {(o, a, b) for o, a, b, _ in rows(task, "train")}
    symbols = {"+": "add", "-": "sub", "*": "mul", "/": "div"}
    for clean, corrupt, ans, cans in zip(
        pairs.clean.tolist(),
        pairs.corrupt.tolist(),
        pairs.answers.tolist(),
        pairs.corrupt_answers.tolist(),
    ):
        changed = [i for i in range(4) if clean[i] != corrupt[i]]
        assert changed == [pos[swap]] and corrupt[pos[swap]] in residues
        o = symbols[v.tokens[corrupt[pos["op"]]].strip("<>")]
        a, b = (corrupt[pos[k]] - v.residue_offset for k in ("a", "b"))
        assert cans - v.residue_offset == reference(o, a, b, p) and cans != ans
        if facts == "id":
            assert (o, a, b) in train
    # mul: when the other operand is 0, no swap changes the answer, so those are skipped
    if op == "mul":
        other = pairs.clean[:, pos["b" if swap == "a" else "a"]] - v.residue_offset
        assert bool((other != 0).all())


def test_op_swap_of_the_mixed_variant():
    task = make_task("modular", preset=None, p=7, op="add,sub,mul", frac_train=0.5)
    pairs = op_pairs(task, "test_id", facts="all", n_examples=40, seed=2)
    v, pos = task.vocab, task.positions
    symbols = {"+": "add", "-": "sub", "*": "mul"}
    assert len(pairs) == 40
    for clean, corrupt, ans, cans in zip(
        pairs.clean.tolist(),
        pairs.corrupt.tolist(),
        pairs.answers.tolist(),
        pairs.corrupt_answers.tolist(),
    ):
        assert [i for i in range(4) if clean[i] != corrupt[i]] == [pos["op"]]
        assert corrupt[pos["op"]] in v.operator_ids
        o = symbols[v.tokens[corrupt[pos["op"]]].strip("<>")]
        a, b = clean[0] - v.residue_offset, clean[2] - v.residue_offset
        assert cans - v.residue_offset == reference(o, a, b, 7) != ans - v.residue_offset
    with pytest.raises(ValueError, match="several operators"):
        op_pairs(make_task("modular", preset=None, p=7))


def test_fourier_spectrum_finds_the_frequencies_of_a_hand_built_embedding():
    task = make_task("modular", preset=None, p=31)
    cfg = model_config(task, "tiny")
    model = build_model(cfg, seed=0)
    p, a = 31, torch.arange(31, dtype=torch.float64)
    embedding = torch.zeros(cfg.d_vocab, cfg.d_model)
    # residue a -> cos(2 pi 3 a / p) (and its sine) and, weaker, cos(2 pi 7 a / p), in 4 columns
    rows_ = torch.stack(
        [
            torch.cos(2 * math.pi * 3 * a / p),
            torch.sin(2 * math.pi * 3 * a / p),
            0.8 * torch.cos(2 * math.pi * 7 * a / p),
            0.8 * torch.sin(2 * math.pi * 7 * a / p),
        ],
        dim=1,
    ).float()
    embedding[list(task.vocab.residue_ids), :4] = rows_
    with torch.no_grad():
        model.W_E.copy_(embedding)
    spectrum = fourier_spectrum(model, task, coverage=0.99)
    assert spectrum.key_frequencies == (3, 7)
    torch.testing.assert_close(spectrum.top_share(2), 1.0, atol=1e-5, rtol=0)
    # its energies: p^2 / 2 per unit-amplitude cosine or sine column (Parseval)
    torch.testing.assert_close(
        spectrum.energy[[2, 6]], torch.tensor([p * p / 2.0, 0.64 * p * p / 2.0]), rtol=1e-4, atol=0
    )


def test_fourier_spectrum_refuses_a_model_of_another_task(tiny_composition):
    """A composition model's embedding has rows at the residues' token ids too, so the spectrum
    of a task it was never trained on was computed without a word."""
    model = build_model(model_config(tiny_composition, "tiny"), seed=0)
    modular = make_task("modular", preset=None, p=7)
    assert max(modular.vocab.residue_ids) < model.cfg.d_vocab  # it would have run
    with pytest.raises(ValueError, match="the modular task has a vocabulary of .* trained on an"):
        fourier_spectrum(model, modular)


def test_tiny_run_through_train_and_analyze(tmp_path):
    task = make_task("modular", preset=None, p=7, op="add,sub", frac_train=0.6)
    cfg = tiny_train_config(max_steps=30, batch_size=None, eval_every=10)
    run = train(task, cfg, out=tmp_path / "r", progress=False)
    assert run.model_cfg.n_layers == 1 and run.model_cfg.normalization_type is None
    assert "add.test_id_acc" in run.metrics[-1] and "sub.train_inferred_acc" in run.metrics[-1]
    analysis = analyze(load_run(tmp_path / "r"), n_examples=20, top_k=2)
    assert "reuse" in analysis.results and analysis.results["reuse"].tasks == ("add", "sub")
    fourier = analysis.results["fourier"]
    assert fourier.steps == tuple(run.steps) and fourier.results[-1].p == 7
    single = make_task("modular", preset=None, p=7)
    circuit = find_circuit(build_model(model_config(single, "tiny")), single, n_examples=20)
    assert circuit.swaps == ("a", "b") and circuit.task == "modular"
    assert subtasks(single) == {"modular": single}


def test_cli_trains_modular(tmp_path, capsys):
    out = tmp_path / "m"
    args = ["train", "modular", "--out", str(out), "--model-size", "tiny", "--steps", "20"]
    args += ["--eval-every", "10", "--device", "cpu", "--no-progress", "--no-report"]
    for kv in ("p=11", "op=add,sub", "op_token=true"):
        args += ["--task-param", kv]
    assert main(args + ["--seed", "2"]) == 0
    run = load_run(out)
    assert run.task.params == ModularParams(p=11, op="add,sub", frac_train=0.45, seed=2)
    assert run.last_step == 20 and run.train_cfg.batch_size is None
    # 2 operations x round(0.45 * 11 * 11) = 54 training pairs (the tutorial preset's share)
    assert "modular (tutorial): 108 training inferred, 108 training rows" in capsys.readouterr().out
    assert main(["analyze", str(out), "--n-examples", "10"]) == 0
