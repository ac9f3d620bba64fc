"""The mixed task against its two sub-tasks generated on their own: same counts, same text, and a
merged vocabulary in which no two kinds of token share an id."""

import dataclasses

import pytest
import torch

import grok_circuits.tasks.mixed  # noqa: F401  (registers "mixed")
from grok_circuits.tasks import load_task, make_task
from grok_circuits.tasks.comparison import make_comparison
from grok_circuits.tasks.composition import make_composition
from grok_circuits.tasks.mixed import (
    SUBTASKS,
    MixedParams,
    derived_seed,
    mixed_subtask,
)
from grok_circuits.training.loop import TrainConfig, train
from tests import helpers

TINY_MIXED = {**helpers.TINY_MIXED, "seed": 3}


@pytest.fixture(scope="module")
def task():
    return make_task("mixed", preset=None, **TINY_MIXED)


@pytest.fixture(scope="module")
def subs(task):
    """The sub-tasks generated on their own, each in its own vocabulary."""
    return {
        "composition": make_composition(task.params.composition),
        "comparison": make_comparison(task.params.comparison),
    }


def test_counts_equal_the_subtasks(task, subs):
    for name, sub in subs.items():
        for k, v in sub.counts.items():
            assert task.counts[f"{name}.{k}"] == v
        for probe in sub.probe_names:
            assert len(task.splits[f"{name}.{probe}"]) == len(sub.splits[probe])
    assert len(task.train) == task.counts["train"] == sum(len(s.train) for s in subs.values())
    expected = {f"{n}.{p}" for n, s in subs.items() for p in s.probe_names}
    assert set(task.probe_names) == expected


def test_subtasks_share_entities_and_parameters(task, subs):
    p = task.params
    assert subs["composition"].params.n_entities == subs["comparison"].params.n_entities == 30
    assert subs["composition"].params.phi == p.composition_phi
    assert subs["comparison"].params.n_values == p.n_values
    seeds = {derived_seed(p.seed, k) for k in range(2)}
    assert {s.params.seed for s in subs.values()} == seeds and len(seeds) == 2


def test_merged_vocabulary_has_no_collision(task):
    v = task.vocab
    assert len(set(v.tokens)) == len(v.tokens)
    blocks = [v.entity_ids, v.relation_ids, v.attribute_ids, v.value_ids, v.label_ids]
    ids = [i for b in blocks for i in b]
    assert len(ids) == len(set(ids)) == len(v) - 3  # the blocks tile all but the 3 specials
    assert len(v.relation_ids) == 6 and len(v.attribute_ids) == 3 and len(v.value_ids) == 4
    assert len(v.label_ids) == 3 * 3


def _kinds(vocab, ids):
    names = ("entity", "relation", "attribute", "value", "label")
    blocks = (
        vocab.entity_ids,
        vocab.relation_ids,
        vocab.attribute_ids,
        vocab.value_ids,
        vocab.label_ids,
    )
    out = set()
    for i in ids:
        out |= {n for n, b in zip(names, blocks) if i in b}
    return out


def test_each_subtask_uses_only_its_own_kinds_of_tokens(task):
    v = task.vocab
    comp = torch.cat([task.splits[f"composition.{p}"].answers for p in ("test_id", "id_atomic")])
    comp_prompts = task.splits["composition.train_inferred"].tokens.flatten().tolist()
    assert _kinds(v, comp_prompts) == {"entity", "relation"}
    assert _kinds(v, comp.tolist()) == {"entity"}
    cmp_prompts = task.splits["comparison.train_inferred"].tokens
    assert _kinds(v, cmp_prompts[:, [0]].flatten().tolist()) == {"attribute"}
    assert _kinds(v, cmp_prompts[:, [2, 4]].flatten().tolist()) == {"entity"}
    assert _kinds(v, task.splits["comparison.train_inferred"].answers.tolist()) == {"label"}
    assert _kinds(v, task.splits["comparison.id_atomic"].answers.tolist()) == {"value"}


def test_every_example_decodes_as_in_its_subtask(task, subs):
    for name, sub in subs.items():
        for probe in sub.probe_names:
            for i in range(len(sub.splits[probe])):
                assert task.decode(f"{name}.{probe}", i) == sub.decode(probe, i)
    n_comp = len(subs["composition"].train)
    for i in range(len(task.train)):
        name, j = ("composition", i) if i < n_comp else ("comparison", i - n_comp)
        assert task.decode("train", i) == subs[name].decode("train", j)


def test_token_metadata_is_remapped_and_raw_metadata_kept(task, subs):
    for name, probe, keys in (
        ("composition", "train_inferred", ("bridge",)),
        ("comparison", "test_ood", ("e1", "e2")),
    ):
        mine, theirs = task.splits[f"{name}.{probe}"], subs[name].splits[probe]
        for k in keys:
            assert task.vocab.decode(mine.meta[k]) == subs[name].vocab.decode(theirs.meta[k])
        raw = set(theirs.meta) - set(keys)
        assert raw  # hop1/hop2, attribute/value1/value2
        for k in raw:
            assert torch.equal(mine.meta[k], theirs.meta[k])


def test_train_is_padded_to_five_and_positions_prefixed(task):
    assert task.train.tokens.shape[1] == 5
    assert task.positions["composition.r1"] == 1 and task.positions["comparison.e2"] == 4
    assert set(task.key_probes.values()) <= set(task.probe_names)


def test_deterministic_and_seeded():
    a, b = (
        make_task("mixed", preset=None, **TINY_MIXED),
        make_task("mixed", preset=None, **TINY_MIXED),
    )
    c = make_task("mixed", preset=None, **{**TINY_MIXED, "seed": 4})
    assert all(torch.equal(a.train.tokens, x.train.tokens) for x in (b,))
    assert not torch.equal(a.train.tokens, c.train.tokens)


def test_save_load_round_trip(task, tmp_path):
    back = load_task(task.save(tmp_path / "mixed"))
    assert back.name == "mixed" and back.params == task.params
    assert back.positions == task.positions and back.key_probes == task.key_probes
    assert back.counts == task.counts and back.vocab == task.vocab
    assert list(back.splits) == list(task.splits)
    for k, s in task.splits.items():
        for field, t in s.tensors().items():
            assert torch.equal(back.splits[k].tensors()[field], t), (k, field)


def test_presets_and_params_round_trip():
    t = make_task("mixed", preset="tutorial")
    assert t.params.n_entities == 100 and t.params.n_relations == 20
    assert t.params.out_degree == 10 and t.params.n_attributes == 5
    assert MixedParams.from_dict(t.params.to_dict()) == t.params
    assert make_task("mixed", preset="tutorial", composition_phi=4.0).params.composition.phi == 4.0


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(composition_phi=-1.0), ["composition_phi", "> 0"]),
        (dict(comparison_ood_fraction=1.5), ["comparison_ood_fraction"]),
        (dict(out_degree=30), ["out_degree", "n_relations"]),
        (dict(n_values=1), ["n_values"]),
        (dict(composition_phi=50.0), ["composition_phi", "use composition_phi <="]),
    ],
)
def test_bad_parameters_name_the_mixed_field(params, words):
    with pytest.raises(ValueError) as err:
        make_task("mixed", preset=None, **{**TINY_MIXED, **params})
    for w in words:
        assert w in str(err.value)


def test_from_dict_rejects_unknown_fields():
    with pytest.raises(ValueError, match="unknown MixedParams"):
        MixedParams.from_dict({**TINY_MIXED, "phi": 2.0})


def test_subtask_view(task, subs):
    for name in SUBTASKS:
        view = mixed_subtask(task, name)
        assert view.name == name and view.vocab == task.vocab
        assert view.positions == subs[name].positions
        assert set(view.probe_names) == set(subs[name].probe_names)
        assert torch.equal(view.splits["test_id"].tokens, task.splits[f"{name}.test_id"].tokens)
        assert len(view.train) == len(subs[name].train)
        for i in range(len(view.train)):
            assert view.decode("train", i) == subs[name].decode("train", i)
    with pytest.raises(ValueError, match="sub-task"):
        mixed_subtask(task, "arithmetic")
    comp = make_composition(task.params.composition)
    assert mixed_subtask(comp, "composition") is comp
    with pytest.raises(ValueError, match="needs a mixed task"):
        mixed_subtask(comp, "comparison")


def test_trains_and_regenerates_from_the_run(task, tmp_path):
    cfg = TrainConfig(
        max_steps=4,
        batch_size=64,
        eval_every=2,
        model_size="tiny",
        device="cpu",
        warmup_steps=1,
        eval_size=50,
    )
    run = train(task, cfg, out=tmp_path / "run", progress=False)
    assert {"composition.test_id_acc", "comparison.test_ood_acc"} <= set(run.metrics[-1])
    regenerated = run.task
    assert dataclasses.asdict(regenerated.params) == dataclasses.asdict(task.params)
    assert torch.equal(regenerated.train.tokens, task.train.tokens)


#: The mixed task's fingerprint for TINY_MIXED before the composition sub-task kept its
#: mixed-hop probes (they are left out of it, so old mixed runs still match).
FINGERPRINT_BEFORE_HOP_PROBES = "188c591da9b6c12e258cd845c1b490a210d411162e72b2061d464e46e119a20e"


def test_mixed_task_carries_the_composition_hop_probes(task, subs):
    names = ("composition.test_ood_hop1", "composition.test_ood_hop2")
    assert task.derived_probes == names
    assert task.fingerprint() == FINGERPRINT_BEFORE_HOP_PROBES
    comp = subs["composition"]
    for name in names:
        probe = name.removeprefix("composition.")
        assert task.stats()[name] == comp.stats()[probe] == len(task.splits[name])
        for i in (0, len(comp.splits[probe]) - 1):
            assert task.decode(name, i) == comp.decode(probe, i)
    view = mixed_subtask(task, "composition")
    assert view.derived_probes == ("test_ood_hop1", "test_ood_hop2")
    assert mixed_subtask(task, "comparison").derived_probes == ()
