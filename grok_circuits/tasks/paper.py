"""The paper's released datasets, read exactly as released.

Wang et al. (2024) released one folder per dataset (``composition.2000.200.9.0/``,
``comparison.1000.12.6/``, ``cplx_reasoning/``, ...), written by the notebooks of their
repository (OSU-NLP-Group/GrokkedTransformer, ``composition.ipynb``, ``comparison.ipynb``,
``complex_reasoning.ipynb``):

- ``train.json``: everything the model was trained on; ``valid.json``: the OOD test queries the
  authors evaluated during training; ``test.json``: the probes, each item with a ``type``
  (``id_atomic``, ``ood_atomic``, ``train_inferred``, ``test_inferred_iid``,
  ``test_inferred_ood``; the complex-reasoning set also ``train_inferred_topleft``,
  ``train_inferred_cross`` and ``test_hard``). Each item is
  ``{"input_text": "<e_3><r_1><r_5>", "target_text": "<e_3><r_1><r_5><e_42></a>", ...}``:
  tokens written with no spaces, the target being the input, the answer and ``</a>`` (the
  complex-reasoning set puts ``<a>`` before the answer).
- ``vocab.json``: the tokens the authors added to GPT-2's tokenizer, a flat list.

:func:`load_paper_data` turns such a folder into a :class:`~grok_circuits.TaskData` named
``"composition"``, ``"comparison"`` or ``"complex"``, so that every analysis runs on it as on a
generated task:

- **One split per file and per type**, with the file's counts: ``"train"`` (``train.json``),
  ``"valid"`` (``valid.json``) and one split per ``type`` of ``test.json``. Nothing is
  regenerated or resampled.
- **Tokens.** The vocabulary is ``vocab.json``'s tokens laid out as grok_circuits lays out a
  task's (``<pad>``, ``<q>``, ``<mask>``, entities, relations, attributes, values, labels, then
  every other token of the file, e.g. ``<sep> <a> </a> </q>``). Two spellings differ from the
  generators' and are translated: values ``<7>`` are ``<v_7>`` and comparison labels
  ``<attr_3_0>`` / ``_1`` / ``_2`` are ``<attr_3_lt>`` / ``_eq`` / ``_gt``.
  :func:`paper_token` gives the file's spelling of any token, which is how a checkpoint's own
  tokenizer maps them to its ids (:mod:`grok_circuits.hf`).
- **Prompt, answer, answer position** as the authors' training and ``eval_qa.py`` use them: the
  prompt is the input (and the ``<a>`` that precedes the answer, where there is one); the answer
  is the token before ``</a>``, predicted at the prompt's last position. The training loss was on
  the answer and ``</a>``, and ``eval_qa.py`` counts an example right when greedy decoding
  produces the answer and then ``</a>``: :func:`exact_match` computes that.
- **What the analyses need is derived from the facts in the files**: the bridge entity of every
  two-hop query (its first hop, looked up among the atomic facts of ``train.json``, its second
  hop checked against the answer), the two values of every comparison (checked against its
  label), the named positions, and the ID and OOD atomic facts that swaps draw from
  (:attr:`TaskData.facts`). For composition a fact is ID when it is a hop of a training
  inferred fact, the rule the authors' own causal tracing uses (``train.json`` does not mark
  it).

A folder that is not in this format, or that contradicts itself (a two-hop query whose atomic
facts are missing, a label that does not follow from the values, an unknown token), is refused
with one line naming the file and the item.
"""

import os
import re
from collections.abc import Sequence
from dataclasses import asdict, dataclass
from pathlib import Path

import numpy as np
import torch

from grok_circuits.io import read_json
from grok_circuits.tasks.data import Split, TaskData
from grok_circuits.tasks.vocab import LABELS, Vocab

FILES = ("train.json", "valid.json", "test.json", "vocab.json")
END = "</a>"
ANSWER_START = "<a>"

_PIECE = re.compile(r"<[^<>]*>")
_KINDS = {
    "entity": re.compile(r"<e_(\d+)>"),
    "relation": re.compile(r"<r_(\d+)>"),
    "attribute": re.compile(r"<attr_(\d+)>"),
    "label": re.compile(r"<attr_(\d+)_([012])>"),
    "value": re.compile(r"<(\d+)>"),
}

#: Named prompt positions of an inferred query, per kind of dataset. The complex-reasoning
#: format closes the question with ``</q>`` and opens the answer with ``<a>``.
POSITIONS = {
    "composition": {"h": 0, "r1": 1, "r2": 2},
    "comparison": {"attr": 0, "q": 1, "e1": 2, "mask": 3, "e2": 4},
    "complex": {"attr": 0, "q": 1, "e1": 2, "mask": 3, "e2": 4, "/q": 5, "a": 6},
}


class PaperDataError(ValueError):
    """A dataset folder that is not in the released format, or contradicts itself."""


@dataclass(frozen=True)
class PaperDataParams:
    """Where a released dataset came from (what ``TaskData.params`` holds for it)."""

    path: str
    kind: str
    n_entities: int
    n_relations: int = 0
    n_attributes: int = 0
    n_values: int = 0

    def to_dict(self) -> dict:
        return {"source": "paper", **asdict(self)}


def paper_token(token: str) -> str:
    """The released files' spelling of a grok_circuits token (``<v_7>`` -> ``<7>``,
    ``<attr_3_lt>`` -> ``<attr_3_0>``; every other token is spelled alike)."""
    m = re.fullmatch(r"<v_(\d+)>", token)
    if m:
        return f"<{m[1]}>"
    m = re.fullmatch(r"<attr_(\d+)_(lt|eq|gt)>", token)
    if m:
        return f"<attr_{m[1]}_{LABELS.index(m[2])}>"
    return token


def _read(path: Path) -> list:
    data = read_json(path, fix="download the dataset again", error=PaperDataError)
    if not isinstance(data, list):
        raise PaperDataError(f"{path} holds a {type(data).__name__}, not the released list")
    return data


def _count(path: Path, tokens: list[str], kind: str) -> int:
    """How many tokens of ``kind`` (0 .. n-1, all present) ``vocab.json`` has."""
    pattern = _KINDS[kind]
    found = sorted(int(m[1]) for t in tokens if (m := pattern.fullmatch(t)))
    if found and found != list(range(len(found))):
        raise PaperDataError(
            f"{path}: the {kind} tokens are not numbered 0..{len(found) - 1} without gaps"
        )
    return len(found)


def _vocab(path: Path, tokens: list) -> tuple[Vocab, str]:
    if not tokens or not all(isinstance(t, str) and _PIECE.fullmatch(t) for t in tokens):
        raise PaperDataError(f"{path} must be a list of '<...>' token strings, as released")
    n_ent = _count(path, tokens, "entity")
    n_rel = _count(path, tokens, "relation")
    n_attr = _count(path, tokens, "attribute")
    n_val = _count(path, tokens, "value") if n_attr else 0
    if not n_ent or not (n_rel or n_attr):
        raise PaperDataError(
            f"{path} has no entity tokens <e_N> with relations <r_N> or attributes <attr_N>: "
            "not a composition, comparison or complex-reasoning dataset"
        )
    base = Vocab(n_entities=n_ent, n_relations=n_rel, n_attributes=n_attr, n_values=n_val)
    known = {paper_token(t) for t in base.tokens}
    extra = tuple(t for t in tokens if t not in known)
    kind = "composition" if n_rel else "comparison"
    return Vocab(n_ent, n_rel, n_attr, n_val, extra=extra), kind


class _Reader:
    """Turns released items into token ids, naming the file and the item in every error."""

    def __init__(self, vocab: Vocab):
        self.vocab = vocab
        self.ids = {paper_token(t): i for i, t in enumerate(vocab.tokens)}

    def tokens(self, text, where: str) -> list[int]:
        if not isinstance(text, str):
            raise PaperDataError(f"{where}: expected a string of tokens, got {text!r}")
        pieces = _PIECE.findall(text)
        if "".join(pieces) != text:
            raise PaperDataError(f"{where}: {text!r} is not a run of '<...>' tokens")
        unknown = [p for p in pieces if p not in self.ids]
        if unknown:
            raise PaperDataError(f"{where}: token {unknown[0]} is not in vocab.json")
        return [self.ids[p] for p in pieces]

    def item(self, item, where: str) -> tuple[list[int], int]:
        """(prompt ids, answer id) of one item."""
        if not isinstance(item, dict) or "input_text" not in item or "target_text" not in item:
            raise PaperDataError(f"{where}: an item needs 'input_text' and 'target_text'")
        prompt = self.tokens(item["input_text"], where)
        target = self.tokens(item["target_text"], where)
        rest = target[len(prompt) :]
        end, start = self.vocab.token_id(END), self.ids.get(ANSWER_START)
        if target[: len(prompt)] != prompt or not rest or rest[-1] != end:
            raise PaperDataError(
                f"{where}: target_text must be the input_text, the answer and {END}"
            )
        if len(rest) == 3 and rest[0] == start:
            prompt, rest = prompt + [start], rest[1:]
        if len(rest) != 2:
            raise PaperDataError(
                f"{where}: expected one answer token before {END} (after {ANSWER_START} if any), "
                f"got {len(rest) - 1}"
            )
        return prompt, rest[0]


def _split(
    rows: Sequence[tuple[list[int], int]], meta: dict[str, list[int]] | None = None
) -> Split:
    width = max((len(p) for p, _ in rows), default=1)
    tokens = torch.zeros((len(rows), width), dtype=torch.long)  # right-padded with <pad> (0)
    for i, (p, _) in enumerate(rows):
        tokens[i, : len(p)] = torch.tensor(p)
    return Split(
        tokens,
        torch.tensor([len(p) - 1 for p, _ in rows], dtype=torch.long),
        torch.tensor([a for _, a in rows], dtype=torch.long),
        {k: torch.tensor(v, dtype=torch.long) for k, v in (meta or {}).items()},
    )


def load_paper_data(path: str | os.PathLike) -> TaskData:
    """Read one released dataset folder of Wang et al. (2024) (see the module docstring).

    Args:
        path: the folder holding ``train.json``, ``valid.json``, ``test.json`` and
            ``vocab.json``.

    Returns:
        A :class:`~grok_circuits.TaskData` named ``"composition"``, ``"comparison"`` or
        ``"complex"``, with one split per file and per ``test.json`` type, key probes
        ``train_inferred`` (the complex set: ``train_inferred_topleft``),
        ``test_inferred_iid`` and ``test_inferred_ood`` (the complex set: ``test_hard``), and
        ``facts`` (the ID and OOD atomic facts the swaps draw from).

    Raises:
        PaperDataError: (a ValueError) naming the file and the item that is not in the
            released format, or that contradicts the facts.
    """
    root = Path(path)
    if not root.is_dir():
        raise PaperDataError(f"{root} is not a folder; point at a released dataset folder")
    missing = [f for f in FILES if not (root / f).is_file()]
    if missing:
        hint = (
            " (a grok_circuits task folder: load it with load_task)"
            if (root / "manifest.json").is_file()
            else ""
        )
        raise PaperDataError(
            f"{root} is not a released dataset folder: it lacks {missing}; it needs "
            f"{list(FILES)}{hint}"
        )
    vocab, kind = _vocab(root / "vocab.json", _read(root / "vocab.json"))
    reader = _Reader(vocab)
    files = {name: _read(root / name) for name in FILES[:3]}
    if any(ANSWER_START in str(it.get("target_text", "")) for it in files["train.json"][:50]):
        kind = "complex" if kind == "comparison" else kind
    parsed = {
        name: [reader.item(it, f"{root / name}, item {i}") for i, it in enumerate(items)]
        for name, items in files.items()
    }
    types: dict[str, list[int]] = {}
    for i, it in enumerate(files["test.json"]):
        if "type" not in it:
            raise PaperDataError(f"{root / 'test.json'}, item {i}: has no 'type'")
        types.setdefault(it["type"], []).append(i)
    groups: dict[str, tuple[str, Sequence[int]]] = {
        "train": ("train.json", range(len(parsed["train.json"])))
    }
    groups["valid"] = ("valid.json", range(len(parsed["valid.json"])))
    groups.update({t: ("test.json", idx) for t, idx in types.items()})

    facts_of = _composition_facts if kind == "composition" else _comparison_facts
    facts, meta_of = facts_of(root, vocab, files, parsed)
    splits = {}
    for name, (file, idx) in groups.items():
        rows = [parsed[file][i] for i in idx]
        where = [f"{root / file}, item {i}" for i in idx]
        splits[name] = _split(rows, meta_of(rows, where))
    key = {
        "train": "train_inferred" if "train_inferred" in splits else "train_inferred_topleft",
        "id": "test_inferred_iid",
        "ood": "test_hard" if "test_hard" in splits else "test_inferred_ood",
    }
    missing_probes = sorted({key["train"], key["id"]} - set(splits))
    if missing_probes:
        raise PaperDataError(
            f"{root / 'test.json'} has no items of type {missing_probes}; its types are "
            f"{sorted(types)}"
        )
    key = {role: probe for role, probe in key.items() if probe in splits}
    params = PaperDataParams(
        str(root), kind, vocab.n_entities, vocab.n_relations, vocab.n_attributes, vocab.n_values
    )
    counts = {
        "atomic_id": len(facts["id"]),
        "atomic_ood": len(facts["ood"]),
        **{k: len(s) for k, s in splits.items()},
    }
    return TaskData(
        name=kind,
        params=params,
        vocab=vocab,
        splits=splits,
        positions=dict(POSITIONS[kind]),
        key_probes=key,
        counts=counts,
        facts=facts,
    )


# ----------------------------------------------------------------------------- composition
def _composition_facts(root, vocab, files, parsed):
    """Facts (h, r) -> t from ``train.json``'s two-token items; ID = a hop of a training
    two-hop item; and the bridge of every two-hop query."""
    table: dict[tuple[int, int], int] = {}
    for i, (p, a) in enumerate(parsed["train.json"]):
        if len(p) == 2:
            if table.setdefault((p[0], p[1]), a) != a:
                raise PaperDataError(
                    f"{root / 'train.json'}, item {i}: ({vocab.tokens[p[0]]}, "
                    f"{vocab.tokens[p[1]]}) has two different tails"
                )

    def bridge(prompt: list[int], answer: int, where: str) -> int:
        h, r1, r2 = prompt
        if (h, r1) not in table:
            raise PaperDataError(
                f"{where}: its first hop ({vocab.tokens[h]}, {vocab.tokens[r1]}) is not an "
                "atomic fact of train.json"
            )
        b = table[(h, r1)]
        if table.get((b, r2)) != answer:
            raise PaperDataError(
                f"{where}: its second hop ({vocab.tokens[b]}, {vocab.tokens[r2]}) does not lead "
                f"to its answer {vocab.tokens[answer]} in train.json's atomic facts"
            )
        return b

    used = set()
    for i, (p, a) in enumerate(parsed["train.json"]):
        if len(p) == 3:
            b = bridge(p, a, f"{root / 'train.json'}, item {i}")
            used |= {(p[0], p[1]), (b, p[2])}

    def atomic(keys) -> Split:
        keys = sorted(keys)
        return _split([([h, r], table[(h, r)]) for h, r in keys])

    facts = {"id": atomic(used), "ood": atomic(set(table) - used)}

    def meta(rows, where):
        if rows and all(len(p) == 3 for p, _ in rows):
            return {"bridge": [bridge(p, a, w) for (p, a), w in zip(rows, where)]}
        return None

    return facts, meta


# ----------------------------------------------------------------------------- comparison
def _comparison_facts(root, vocab, files, parsed):
    """Values (e, attr) -> v from the atomic items (ID: ``train.json``'s ``id_atomic``; OOD:
    its ``ood_atomic``, or ``test.json``'s where training never states them, as in the complex
    set), and the values and labels of every comparison."""
    values = np.full((vocab.n_entities, vocab.n_attributes), -1, dtype=np.int64)
    by_type: dict[str, set] = {"id": set(), "ood": set()}
    ent, attr_off, val = vocab.entity_offset, vocab.attribute_offset, vocab.value_offset
    for file in ("train.json", "test.json"):
        for i, (it, (p, a)) in enumerate(zip(files[file], parsed[file])):
            kind = {"id_atomic": "id", "ood_atomic": "ood"}.get(it.get("type"))
            ea = [t for t in p if t in vocab.entity_ids or t in vocab.attribute_ids]
            if kind is None or len(ea) != 2:
                continue
            e, at = ea[0] - ent, ea[1] - attr_off
            if a not in vocab.value_ids:
                raise PaperDataError(f"{root / file}, item {i}: an atomic fact must answer a value")
            if values[e, at] not in (-1, a - val):
                raise PaperDataError(
                    f"{root / file}, item {i}: {vocab.tokens[ea[0]]} has two values for "
                    f"{vocab.tokens[ea[1]]}"
                )
            values[e, at] = a - val
            by_type[kind].add((e, at))
    by_type["ood"] -= by_type["id"]

    def atomic(keys) -> Split:
        rows = [([ent + e, attr_off + at], val + int(values[e, at])) for e, at in sorted(keys)]
        return _split(rows)

    facts = {k: atomic(v) for k, v in by_type.items()}
    pos = POSITIONS["comparison"]

    def meta(rows, where):
        if not rows or any(len(p) <= pos["e2"] or p[pos["q"]] != vocab.query_id for p, _ in rows):
            return None
        out: dict[str, list[int]] = {k: [] for k in ("attribute", "value1", "value2", "e1", "e2")}
        for (p, a), w in zip(rows, where):
            at, e1, e2 = p[pos["attr"]] - attr_off, p[pos["e1"]] - ent, p[pos["e2"]] - ent
            v1, v2 = int(values[e1, at]), int(values[e2, at])
            if v1 < 0 or v2 < 0:
                raise PaperDataError(
                    f"{w}: the value of {vocab.tokens[p[pos['e1' if v1 < 0 else 'e2']]]} for "
                    f"{vocab.tokens[p[pos['attr']]]} is stated in no atomic item"
                )
            if a != vocab.label_id(at, int(np.sign(v1 - v2)) + 1):
                raise PaperDataError(
                    f"{w}: its label {paper_token(vocab.tokens[a])} does not follow from the "
                    f"values {v1} and {v2}"
                )
            for k, x in zip(out, (at, v1, v2, ent + e1, ent + e2)):
                out[k].append(x)
        return out

    return facts, meta


__all__ = ["PaperDataError", "PaperDataParams", "load_paper_data", "paper_token"]
