import json

import pytest
import torch

from grok_circuits.tasks import ComparisonParams, CompositionParams, Vocab, load_task


def test_vocab_layout_and_round_trip():
    v = Vocab(n_entities=3, n_relations=2, n_attributes=1, n_values=2)
    assert v.tokens[:3] == ("<pad>", "<q>", "<mask>")
    assert [v.tokens[i] for i in v.entity_ids] == ["<e_0>", "<e_1>", "<e_2>"]
    assert [v.tokens[i] for i in v.relation_ids] == ["<r_0>", "<r_1>"]
    assert [v.tokens[i] for i in v.label_ids] == ["<attr_0_lt>", "<attr_0_eq>", "<attr_0_gt>"]
    assert len(v) == 3 + 3 + 2 + 1 + 2 + 3
    text = "<e_2> <r_1> <r_0>"
    ids = v.encode(text)
    assert ids == [5, 7, 6]
    assert v.decode(ids) == text
    assert v.encode("<e_2><r_1><r_0>") == ids
    assert v.decode(torch.tensor([[5, 0]])) == "<e_2>"  # padding dropped
    assert Vocab.from_dict(v.to_dict()) == v


def test_vocab_errors():
    v = Vocab(n_entities=3)
    with pytest.raises(ValueError, match="<e_9>"):
        v.encode("<e_9>")
    with pytest.raises(ValueError, match="outside"):
        v.decode([99])


@pytest.mark.parametrize(
    "obj",
    [Vocab(n_entities=3, n_relations=2), CompositionParams(), ComparisonParams()],
    ids=lambda o: type(o).__name__,
)
def test_from_dict_names_unknown_fields(obj):
    cls = type(obj)
    assert cls.from_dict(obj.to_dict()) == obj
    # A misspelt field and a derived (non-init) field are both refused by name, as a ValueError.
    extra = {"phii": 1.0, "tokens": ()} if cls is Vocab else {"phii": 1.0}
    with pytest.raises(ValueError, match=rf"unknown {cls.__name__} field\(s\) \[.*'phii'"):
        cls.from_dict({**obj.to_dict(), **extra})
    if cls is Vocab:
        with pytest.raises(ValueError, match="'tokens'"):
            cls.from_dict({**obj.to_dict(), "tokens": ()})


@pytest.mark.parametrize("fixture", ["tiny_composition", "tiny_comparison"])
def test_save_load_round_trip(fixture, request, tmp_path):
    task = request.getfixturevalue(fixture)
    task.save(tmp_path / "task")
    back = load_task(tmp_path / "task")
    assert back.name == task.name and back.params == task.params and back.vocab == task.vocab
    assert list(back.splits) == list(task.splits)
    for name, split in task.splits.items():
        for key, t in split.tensors().items():
            assert torch.equal(back.splits[name].tensors()[key], t), (name, key)
    manifest = json.loads((tmp_path / "task" / "manifest.json").read_text())
    assert manifest["splits"]["train"] == len(task.train)
    assert not list((tmp_path / "task").glob("*.tmp"))  # atomic writes leave nothing behind


def test_load_errors(tmp_path):
    with pytest.raises(FileNotFoundError, match="manifest.json"):
        load_task(tmp_path)


def test_decode_example(tiny_composition):
    text = tiny_composition.decode("test_id", 0)
    prompt, answer = text.split(" -> ")
    assert len(prompt.split()) == 3 and answer.startswith("<e_")
