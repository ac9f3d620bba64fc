"""The composition generator against a slow, obviously-right enumeration of the graph."""

import hashlib
import json

import numpy as np
import pytest
import torch

from grok_circuits.tasks import TaskData, load_task, make_task
from grok_circuits.tasks.composition import HOP_PROBES

PARAMS = dict(
    n_entities=12,
    n_relations=5,
    out_degree=3,
    phi=1.5,
    ood_fraction=0.2,
    test_id_fraction=0.2,
    seed=3,
)


@pytest.fixture(scope="module")
def task():
    return make_task("composition", preset=None, **PARAMS)


def graph(task):
    """(h, r) -> (t, is_ood) from the atomic probes, as plain token ids."""
    facts = {}
    for name, ood in (("id_atomic", False), ("ood_atomic", True)):
        s = task.splits[name]
        for (h, r), t in zip(s.tokens.tolist(), s.answers.tolist()):
            assert (h, r) not in facts
            facts[(h, r)] = (t, ood)
    return facts


def queries(split):
    return {tuple(row[:3]) for row in split.tokens.tolist()}


def test_graph_shape(task):
    facts = graph(task)
    v = task.vocab
    assert len(facts) == 12 * 3
    for h in v.entity_ids:
        rels = [r for (hh, r) in facts if hh == h]
        assert len(rels) == 3 and len(set(rels)) == 3  # distinct relations per head
    assert sum(ood for _, ood in facts.values()) == round(0.2 * 36)


def test_counts_match_brute_force_enumeration(task):
    facts = graph(task)
    id_paths, ood_paths = set(), set()
    for (h, r1), (b, ood1) in facts.items():
        for (bb, r2), (t, ood2) in facts.items():
            if bb != b:
                continue
            if not ood1 and not ood2:
                id_paths.add((h, r1, r2, b, t))
            elif ood1 and ood2:
                ood_paths.add((h, r1, r2, b, t))
    stats = task.stats()
    n_test = round(0.2 * len(id_paths))
    assert stats["id_pool"] == len(id_paths)
    assert stats["test_id"] == n_test
    assert stats["train_inferred"] == round(1.5 * stats["atomic_id"])
    assert stats["test_ood"] == len(ood_paths)
    assert stats["train"] == 36 + stats["train_inferred"]

    def rows(split):
        s = task.splits[split]
        return {
            (*row[:3], b, t)
            for row, b, t in zip(s.tokens.tolist(), s.meta["bridge"].tolist(), s.answers.tolist())
        }

    # every inferred example is a real path with the right bridge and answer
    assert rows("train_inferred") <= id_paths
    assert rows("test_id") <= id_paths
    assert rows("test_ood") == ood_paths


def test_no_leakage_between_splits(task):
    train_q = queries(task.splits["train_inferred"])
    assert not train_q & queries(task.splits["test_id"])
    assert not train_q & queries(task.splits["test_ood"])
    assert not queries(task.splits["test_id"]) & queries(task.splits["test_ood"])


def test_ood_edges_never_a_hop_of_training_inferred_facts(task):
    facts = graph(task)
    s = task.splits["train_inferred"]
    for (h, r1, r2), b in zip(s.tokens.tolist(), s.meta["bridge"].tolist()):
        assert not facts[(h, r1)][1]
        assert not facts[(b, r2)][1]


def test_training_set_is_all_atomic_plus_train_inferred(task):
    train = task.train
    pad = task.vocab.pad_id
    atomic_rows = {
        (r[0], r[1], a)
        for r, a, p in zip(train.tokens.tolist(), train.answers.tolist(), train.answer_pos.tolist())
        if p == 1
    }
    expected = {(h, r, t) for (h, r), (t, _) in graph(task).items()}
    assert atomic_rows == expected
    assert (train.tokens[train.answer_pos == 1][:, 2] == pad).all()
    inferred = train.select(train.answer_pos == 2)
    torch.testing.assert_close(inferred.tokens, task.splits["train_inferred"].tokens)


def test_paper_scale_counts():
    stats = make_task("composition", preset="paper").stats()
    assert (stats["atomic"], stats["atomic_id"], stats["atomic_ood"]) == (40_000, 38_000, 2_000)
    assert stats["train_inferred"] == 273_600
    assert stats["train"] == 313_600


def test_same_seed_same_bytes_other_seed_differs():
    a = make_task("composition", preset="tutorial")
    b = make_task("composition", preset="tutorial")
    c = make_task("composition", preset="tutorial", seed=1)
    for name in a.splits:
        for key, t in a.splits[name].tensors().items():
            assert torch.equal(t, b.splits[name].tensors()[key]), (name, key)
    assert not torch.equal(a.train.tokens[:100], c.train.tokens[:100])


def test_preset_is_overridden_by_explicit_params():
    t = make_task("composition", preset="tutorial", phi=3.0)
    assert t.params.phi == 3.0 and t.params.n_entities == 100


@pytest.mark.parametrize(
    "params, words",
    [
        (dict(phi=50.0), ["phi", "phi <="]),
        (dict(out_degree=30, n_relations=20), ["out_degree", "n_relations"]),
        (dict(ood_fraction=0.0), ["ood_fraction", "between 0 and 1"]),
        (dict(ood_fraction=1.5), ["ood_fraction"]),
        (dict(test_id_fraction=1.0), ["test_id_fraction"]),
        (dict(n_entities=2, out_degree=1, n_relations=1, ood_fraction=0.1), ["ood_fraction"]),
        (dict(colour="red"), ["colour", "parameters are"]),
    ],
)
def test_bad_parameters_name_the_problem(params, words):
    with pytest.raises(ValueError) as err:
        make_task("composition", preset="tutorial", **params)
    for w in words:
        assert w in str(err.value)


def test_max_phi_in_the_message_is_achievable():
    with pytest.raises(ValueError) as err:
        make_task("composition", preset="tutorial", phi=50.0)
    max_phi = float(str(err.value).split("phi <= ")[1].split()[0])
    assert make_task("composition", preset="tutorial", phi=max_phi).stats()["train_inferred"] > 0
    with pytest.raises(ValueError):
        make_task("composition", preset="tutorial", phi=max_phi + 0.05)


def test_unknown_task_and_preset():
    with pytest.raises(ValueError, match="composition"):
        make_task("compositon")
    with pytest.raises(ValueError, match="tutorial"):
        make_task("composition", preset="huge")


def test_relations_distinct_at_paper_scale():
    t = make_task("composition", preset="paper")
    s = t.splits["id_atomic"]
    pairs = s.tokens.numpy()
    assert len({tuple(p) for p in pairs}) == len(pairs)  # (h, r) unique -> distinct relations
    assert np.all(np.isin(s.answers.numpy(), np.array(t.vocab.entity_ids)))


# ----------------------------------------------------------------------------- mixed-hop probes
def test_hop_probes_match_brute_force_enumeration(task):
    """Every mixed path, enumerated in plain Python: first hop OOD and second ID is
    ``test_ood_hop1``, the other way round ``test_ood_hop2``; stats() counts them."""
    facts = graph(task)
    hop1, hop2 = set(), set()
    for (h, r1), (b, ood1) in facts.items():
        for (bb, r2), (t, ood2) in facts.items():
            if bb == b and ood1 != ood2:
                (hop1 if ood1 else hop2).add((h, r1, r2, b, t))
    stats = task.stats()
    assert (stats["test_ood_hop1"], stats["test_ood_hop2"]) == (len(hop1), len(hop2))
    assert len(hop1) > 0 and len(hop2) > 0
    for name, expected in zip(HOP_PROBES, (hop1, hop2)):
        s = task.splits[name]
        got = [
            (*row[:3], b, t)
            for row, b, t in zip(s.tokens.tolist(), s.meta["bridge"].tolist(), s.answers.tolist())
        ]
        assert len(got) == len(set(got)) and set(got) == expected
        assert (s.answer_pos == 2).all()


def test_hop_probes_are_never_trained_on(task):
    trained = queries(task.splits["train_inferred"]) | {
        tuple(r[:3]) for r in task.train.tokens.tolist()
    }
    for name in HOP_PROBES:
        assert not trained & queries(task.splits[name])
    assert task.derived_probes == HOP_PROBES
    assert set(HOP_PROBES) <= set(task.probe_names)  # evaluated during training


def _split_digest(split) -> str:
    h = hashlib.sha256()
    for key, t in split.tensors().items():
        h.update(f"{key}{tuple(t.shape)}".encode())
        h.update(t.contiguous().numpy().tobytes())
    return h.hexdigest()[:20]


#: Digests of the splits, and the fingerprint, that the generator gave for PARAMS before the
#: mixed-hop probes existed: adding them must change none of the other splits, which the runs
#: shipped in data/ regenerate.
BEFORE_HOP_PROBES = {
    "train": "3266352b9ce6329f13f8",
    "train_inferred": "4bb617c7224e13db4afa",
    "test_id": "b75b5403cda2454e300b",
    "test_ood": "a334f07c8a24f939c3f9",
    "id_atomic": "9ddbd949871997ea4c9c",
    "ood_atomic": "facd7c507e6ac524c04f",
}
FINGERPRINT_BEFORE = "4dcdb5d879be8e22095054e77e7ac47c0ebdb57a0ab985ef3e2d1ff7d93b3069"


def test_existing_splits_are_unchanged_by_the_hop_probes(task):
    assert {k: _split_digest(task.splits[k]) for k in BEFORE_HOP_PROBES} == BEFORE_HOP_PROBES
    assert list(task.splits)[: len(BEFORE_HOP_PROBES)] == list(BEFORE_HOP_PROBES)
    assert task.fingerprint() == FINGERPRINT_BEFORE


def test_a_task_saved_before_the_hop_probes_still_loads(task, tmp_path):
    old = TaskData(
        task.name,
        task.params,
        task.vocab,
        {k: v for k, v in task.splits.items() if k not in HOP_PROBES},
        task.positions,
        counts=task.counts,
    )
    old.save(tmp_path)
    manifest = json.loads((tmp_path / "manifest.json").read_text())
    del manifest["derived_probes"]  # as written before the field existed
    (tmp_path / "manifest.json").write_text(json.dumps(manifest))
    loaded = load_task(tmp_path)
    assert loaded.derived_probes == () and loaded.fingerprint() == FINGERPRINT_BEFORE
    task.save(tmp_path / "new")
    assert load_task(tmp_path / "new").derived_probes == HOP_PROBES


def test_derived_probes_must_be_probes(task):
    with pytest.raises(ValueError, match="derived_probes"):
        TaskData(
            task.name,
            task.params,
            task.vocab,
            dict(task.splits),
            task.positions,
            derived_probes=("no_such_probe",),
        )


#: The default tutorial task as the two-hop generator made it: every split (the hop probes
#: included), its parameters as stored, and its fingerprint, which the shipped runs record.
TUTORIAL_SPLITS = {
    "train": "ef0caff0e976dda80913",
    "train_inferred": "5a0845ab24abe494e9a6",
    "test_id": "440c927f22bc7eb2ef51",
    "test_ood": "45aaf5d95076c11b2214",
    "id_atomic": "49b77cff6d4cb718a742",
    "ood_atomic": "737f4410812ee7b3c235",
    "test_ood_hop1": "8162ab97b32679f33a79",
    "test_ood_hop2": "fa6bb110054cecf3a598",
}
TUTORIAL_FINGERPRINT = "d2b7f15f9dffb165933bea187e7e9b9cbbd5f8b9501111d310b573f37245be60"
TUTORIAL_PARAMS = {
    "n_entities": 100,
    "n_relations": 20,
    "out_degree": 10,
    "phi": 8.0,
    "ood_fraction": 0.05,
    "test_id_fraction": 0.05,
    "seed": 0,
}


def test_the_generator_is_pinned_at_the_shipped_runs_params():
    # the shipped composition run (data/runs/composition) was trained on this task: phi 8, the
    # tutorial preset before it moved to 7.2
    t = make_task("composition", preset=None, **TUTORIAL_PARAMS)
    assert {k: _split_digest(s) for k, s in t.splits.items()} == TUTORIAL_SPLITS
    assert list(t.splits) == list(TUTORIAL_SPLITS)
    assert t.params.to_dict() == TUTORIAL_PARAMS
    assert t.positions == {"h": 0, "r1": 1, "r2": 2}
    assert t.fingerprint() == TUTORIAL_FINGERPRINT


def test_the_tutorial_preset_is_that_graph_at_phi_7_2():
    params = make_task("composition", preset="tutorial").params.to_dict()
    assert params == {**TUTORIAL_PARAMS, "phi": 7.2}
