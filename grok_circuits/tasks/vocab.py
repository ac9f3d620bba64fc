"""The task vocabulary: one token per entity, relation, attribute, value, label and residue.

grok_circuits models are trained from scratch on symbolic facts, so there is no natural-language
tokenizer: every token is a readable string such as ``<e_17>`` (entity 17), ``<r_3>`` (relation 3),
``<attr_2>`` (attribute 2), ``<v_5>`` (value 5), ``<attr_2_lt>`` (comparison label), ``<42>``
(residue 42 of modular arithmetic), ``<+>`` (an operator) or ``<=>``, and its id is its index in
:attr:`Vocab.tokens`.
"""

import re
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

import torch

from grok_circuits.checks import check_known_fields

PAD = "<pad>"
QUERY = "<q>"
MASK = "<mask>"
SPECIALS = (PAD, QUERY, MASK)
LABELS = ("lt", "eq", "gt")
EQUALS = "<=>"
_TOKEN = re.compile(r"<[^<>\s]+>")


def entity_token(i: int) -> str:
    return f"<e_{i}>"


def relation_token(i: int) -> str:
    return f"<r_{i}>"


def attribute_token(i: int) -> str:
    return f"<attr_{i}>"


def value_token(i: int) -> str:
    return f"<v_{i}>"


def residue_token(i: int) -> str:
    return f"<{i}>"


def operator_token(symbol: str) -> str:
    return f"<{symbol}>"


def label_token(attribute: int, label: int) -> str:
    """The comparison label ``label`` (0: <, 1: =, 2: >) of one attribute, as in the paper."""
    return f"<attr_{attribute}_{LABELS[label]}>"


@dataclass(frozen=True)
class Vocab:
    """An ordered list of token strings with a fast string -> id map.

    The layout is fixed: specials first, then entities, relations, attributes, values, labels,
    residues, operators and (with residues) ``<=>``, so that ids of one kind are contiguous
    (``vocab.entity_ids`` is a range). The residue and operator blocks come last and are empty
    unless asked for, so the other tasks' token ids do not depend on them.

    Attributes:
        n_residues: residues ``<0> .. <n-1>`` of modular arithmetic (and then ``<=>`` too).
        operators: operator symbols, each a token ``<symbol>`` (e.g. ``("+", "-")``).
        extra: any other tokens, last, in the order given (e.g. the ``<sep>``, ``<a>``,
            ``</a>`` and ``</q>`` of the paper's released datasets); each a ``<...>`` string
            that is not already a token.
    """

    n_entities: int = 0
    n_relations: int = 0
    n_attributes: int = 0
    n_values: int = 0
    n_residues: int = 0
    operators: tuple[str, ...] = ()
    extra: tuple[str, ...] = ()
    tokens: tuple[str, ...] = field(init=False)
    _index: dict[str, int] = field(init=False, repr=False, compare=False)

    def __post_init__(self) -> None:
        for name in ("n_entities", "n_relations", "n_attributes", "n_values", "n_residues"):
            if getattr(self, name) < 0:
                raise ValueError(f"Vocab.{name} must be >= 0, got {getattr(self, name)}")
        ops = tuple(self.operators)
        object.__setattr__(self, "operators", ops)
        for op in ops:
            if not isinstance(op, str) or not op or any(c in op for c in "<> ") or op == "=":
                raise ValueError(
                    f"Vocab.operators: {op!r} is not a usable symbol; use a non-empty string "
                    "without '<', '>', spaces, and other than '='"
                )
        if len(set(ops)) != len(ops):
            raise ValueError(f"Vocab.operators must be distinct, got {ops}")
        tokens = list(SPECIALS)
        tokens += [entity_token(i) for i in range(self.n_entities)]
        tokens += [relation_token(i) for i in range(self.n_relations)]
        tokens += [attribute_token(i) for i in range(self.n_attributes)]
        tokens += [value_token(i) for i in range(self.n_values)]
        if self.n_attributes:
            tokens += [label_token(a, k) for a in range(self.n_attributes) for k in range(3)]
        tokens += [residue_token(i) for i in range(self.n_residues)]
        tokens += [operator_token(op) for op in ops]
        if self.n_residues:
            tokens.append(EQUALS)
        extra = tuple(self.extra)
        object.__setattr__(self, "extra", extra)
        taken = set(tokens)
        for tok in extra:
            if not _TOKEN.fullmatch(str(tok)) or tok in taken:
                problem = "already a token" if tok in taken else "not one '<...>' token"
                raise ValueError(
                    f"Vocab.extra: {tok!r} is {problem}; each extra token is one '<...>' string "
                    "(no spaces, no inner '<' or '>') that the vocabulary does not have yet"
                )
            taken.add(tok)
        tokens += extra
        object.__setattr__(self, "tokens", tuple(tokens))
        object.__setattr__(self, "_index", {t: i for i, t in enumerate(tokens)})

    # Offsets of each block of ids; every block is contiguous.
    @property
    def pad_id(self) -> int:
        return 0

    @property
    def query_id(self) -> int:
        return 1

    @property
    def mask_id(self) -> int:
        return 2

    @property
    def entity_offset(self) -> int:
        return len(SPECIALS)

    @property
    def relation_offset(self) -> int:
        return self.entity_offset + self.n_entities

    @property
    def attribute_offset(self) -> int:
        return self.relation_offset + self.n_relations

    @property
    def value_offset(self) -> int:
        return self.attribute_offset + self.n_attributes

    @property
    def label_offset(self) -> int:
        return self.value_offset + self.n_values

    @property
    def entity_ids(self) -> range:
        return range(self.entity_offset, self.relation_offset)

    @property
    def relation_ids(self) -> range:
        return range(self.relation_offset, self.attribute_offset)

    @property
    def attribute_ids(self) -> range:
        return range(self.attribute_offset, self.value_offset)

    @property
    def value_ids(self) -> range:
        return range(self.value_offset, self.label_offset)

    @property
    def residue_offset(self) -> int:
        return self.label_offset + 3 * self.n_attributes

    @property
    def operator_offset(self) -> int:
        return self.residue_offset + self.n_residues

    @property
    def label_ids(self) -> range:
        return range(self.label_offset, self.residue_offset)

    @property
    def residue_ids(self) -> range:
        """The residues ``<0> .. <n_residues - 1>``, in order."""
        return range(self.residue_offset, self.operator_offset)

    @property
    def operator_ids(self) -> range:
        return range(self.operator_offset, self.operator_offset + len(self.operators))

    @property
    def equals_id(self) -> int:
        """Id of ``<=>`` (present when the vocabulary has residues)."""
        if not self.n_residues:
            raise ValueError("this vocabulary has no residues, so no '<=>' token")
        return self.operator_offset + len(self.operators)

    def operator_id(self, symbol: str) -> int:
        """Id of the operator token ``<symbol>``."""
        if symbol not in self.operators:
            raise ValueError(f"no operator {symbol!r} in this vocabulary; it has {self.operators}")
        return self.operator_offset + self.operators.index(symbol)

    @property
    def extra_offset(self) -> int:
        return len(self.tokens) - len(self.extra)

    def token_id(self, token: str) -> int:
        """Id of one token string, e.g. ``vocab.token_id("</a>")``."""
        if token not in self._index:
            raise ValueError(f"no token {token!r} in this vocabulary (see Vocab.tokens)")
        return self._index[token]

    def label_id(self, attribute, label):
        """Id of the label token; works elementwise on integer arrays/tensors."""
        return self.label_offset + 3 * attribute + label

    def __len__(self) -> int:
        return len(self.tokens)

    def encode(self, text: str | Sequence[str]) -> list[int]:
        """Token ids of ``"<e_1> <r_2>"``, ``"<e_1><r_2>"`` or ``["<e_1>", "<r_2>"]``."""
        if isinstance(text, str):
            pieces = [p + ">" for p in text.replace(" ", "").split(">") if p]
        else:
            pieces = list(text)
        try:
            return [self._index[p] for p in pieces]
        except KeyError as err:
            raise ValueError(
                f"unknown token {err.args[0]!r}; this vocabulary has {len(self)} tokens "
                f"({self.tokens[min(3, len(self) - 1)]} .. {self.tokens[-1]}, see Vocab.tokens)"
            ) from None

    def decode(self, ids: Iterable[int] | torch.Tensor, skip_pad: bool = True) -> str:
        """Readable string of ids, e.g. ``"<e_1> <r_2> <r_7>"``; padding is dropped."""
        if isinstance(ids, torch.Tensor):
            ids = ids.reshape(-1).tolist()
        out = []
        for i in ids:
            if not 0 <= int(i) < len(self.tokens):
                raise ValueError(f"token id {i} is outside this vocabulary (0..{len(self) - 1})")
            if skip_pad and int(i) == self.pad_id:
                continue
            out.append(self.tokens[int(i)])
        return " ".join(out)

    def to_dict(self) -> dict:
        d: dict[str, int | list[str]] = {
            "n_entities": self.n_entities,
            "n_relations": self.n_relations,
            "n_attributes": self.n_attributes,
            "n_values": self.n_values,
        }
        # Written only when used, so the manifests of the other tasks stay as they were.
        if self.n_residues:
            d["n_residues"] = self.n_residues
        if self.operators:
            d["operators"] = list(self.operators)
        if self.extra:
            d["extra"] = list(self.extra)
        return d

    @classmethod
    def from_dict(cls, d: dict) -> "Vocab":
        check_known_fields(cls, d)
        d = dict(d)
        for key in ("operators", "extra"):
            if key in d:
                d[key] = tuple(d[key])
        return cls(**d)
