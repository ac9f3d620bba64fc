"""Dataset types shared by every task: :class:`Split` (a batch of examples as tensors) and
:class:`TaskData` (a whole generated task: vocabulary, facts, splits, parameters).

Every example is a prompt (token ids, right-padded with ``<pad>``), the position whose logits
predict the answer, the answer token, and per-example metadata the analysis needs (the bridge
entity of a two-hop query, the two values of a comparison). Because attention is causal, padding
*after* the answer position never changes the prediction, so atomic facts (2 tokens) and inferred
facts (3 or 5 tokens) can share one batch.

On disk a task is a folder: ``manifest.json`` (task name, parameters, vocabulary, counts, format
version) and ``splits.safetensors`` (one int64 tensor per split field, named ``split/field``).
The tensors are exactly those in memory, so a saved task loads back byte for byte.
"""

import hashlib
import json
import os
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import torch
from jaxtyping import Int
from safetensors.torch import load_file, save_file
from torch import Tensor

from grok_circuits.tasks.vocab import Vocab

FORMAT_VERSION = 1
MANIFEST = "manifest.json"
SPLITS_FILE = "splits.safetensors"
#: How :attr:`TaskData.facts` are named in ``splits.safetensors`` (no split name has it).
FACTS_PREFIX = "facts:"

#: Probes evaluated during training, in the order they are reported (composition adds its
#: mixed-hop probes after them, ``grok_circuits.tasks.composition.HOP_PROBES``).
PROBES = ("train_inferred", "test_id", "test_ood", "id_atomic", "ood_atomic")


def sample_rows(total: int, n: int, seed: int) -> Tensor | None:
    """``n`` of ``total`` row indices drawn without replacement by ``seed``, ascending; None when
    ``n >= total`` (every row)."""
    if n >= total:
        return None
    g = torch.Generator().manual_seed(seed)
    return torch.randperm(total, generator=g)[:n].sort().values


@dataclass(frozen=True)
class Split:
    """A set of examples, ready for the model.

    Attributes:
        tokens: prompt ids, right-padded with ``vocab.pad_id``.
        answer_pos: index of the position whose logits predict the answer.
        answers: id of the answer token.
        meta: per-example integer tensors (e.g. ``bridge`` for composition, ``value1``/``value2``
            and ``attribute`` for comparison); every tensor has the batch dimension first.
    """

    tokens: Int[Tensor, "batch pos"]
    answer_pos: Int[Tensor, " batch"]
    answers: Int[Tensor, " batch"]
    meta: Mapping[str, Tensor] = field(default_factory=dict)

    def __post_init__(self) -> None:
        n = self.tokens.shape[0]
        for name, t in [
            ("answer_pos", self.answer_pos),
            ("answers", self.answers),
            *self.meta.items(),
        ]:
            if t.shape[0] != n:
                raise ValueError(f"Split.{name} has {t.shape[0]} rows but tokens has {n}")

    def __len__(self) -> int:
        return self.tokens.shape[0]

    def select(self, index: Tensor | np.ndarray | slice) -> "Split":
        """The examples at ``index`` (a slice, an index tensor or a boolean mask)."""
        if isinstance(index, np.ndarray):
            index = torch.from_numpy(index)
        return Split(
            self.tokens[index],
            self.answer_pos[index],
            self.answers[index],
            {k: v[index] for k, v in self.meta.items()},
        )

    def sample(self, n: int, seed: int = 0) -> "Split":
        """At most ``n`` examples, drawn without replacement by a fixed seed (all if fewer)."""
        idx = sample_rows(len(self), n, seed)
        return self if idx is None else self.select(idx)

    def to(self, device: str | torch.device) -> "Split":
        return Split(
            self.tokens.to(device),
            self.answer_pos.to(device),
            self.answers.to(device),
            {k: v.to(device) for k, v in self.meta.items()},
        )

    def tensors(self) -> dict[str, Tensor]:
        out = {"tokens": self.tokens, "answer_pos": self.answer_pos, "answers": self.answers}
        out.update({f"meta.{k}": v for k, v in self.meta.items()})
        return out

    @classmethod
    def from_tensors(cls, d: Mapping[str, Tensor]) -> "Split":
        meta = {k.removeprefix("meta."): v for k, v in d.items() if k.startswith("meta.")}
        return cls(d["tokens"], d["answer_pos"], d["answers"], meta)

    @staticmethod
    def concat(splits: list["Split"], pad_id: int) -> "Split":
        """Stack splits, right-padding prompts to the longest; metadata keys present in every
        split are kept."""
        width = max(s.tokens.shape[1] for s in splits)
        tokens = [
            torch.nn.functional.pad(s.tokens, (0, width - s.tokens.shape[1]), value=pad_id)
            for s in splits
        ]
        keys = set.intersection(*(set(s.meta) for s in splits)) if splits else set()
        return Split(
            torch.cat(tokens),
            torch.cat([s.answer_pos for s in splits]),
            torch.cat([s.answers for s in splits]),
            {k: torch.cat([s.meta[k] for s in splits]) for k in sorted(keys)},
        )


@dataclass
class TaskData:
    """A generated task.

    Attributes:
        name: ``"composition"``, ``"comparison"`` or ``"mixed"``.
        params: the generator's parameters (``to_dict`` / ``from_dict``), which regenerate it.
        vocab: the token vocabulary.
        splits: ``"train"`` (everything the model is trained on) and the evaluation probes
            (``PROBES``; the mixed task prefixes them with the task name).
        positions: names of the prompt positions of an inferred query, e.g.
            ``{"h": 0, "r1": 1, "r2": 2}`` for composition.
        key_probes: which probes the progress bar and stopping rule read as ``train`` and
            ``id`` accuracy, and optionally ``ood``; each must be one of ``splits``.
        derived_probes: probes that are a function of the other splits, never trained on and
            left out of :meth:`fingerprint`, so that a probe added to a generator later does not
            make runs saved before it fail to match their regenerated task (the composition
            task's ``test_ood_hop1`` / ``test_ood_hop2``).
        facts: the atomic facts the task is built on, where its probes hold only a sample of
            them (a released dataset's ``id_atomic`` probe is 3,000 of its 38,000 ID facts):
            ``{"id": Split, "ood": Split}`` in the generator's two-token form (``<e> <r>`` ->
            ``<t>``, ``<e> <attr>`` -> ``<v>``). Swaps build counterfactuals from them. Empty for
            a generated task, whose ``id_atomic`` and ``ood_atomic`` probes are complete.
    """

    name: str
    params: Any
    vocab: Vocab
    splits: dict[str, Split]
    positions: dict[str, int]
    key_probes: dict[str, str] = field(
        default_factory=lambda: {"train": "train_inferred", "id": "test_id", "ood": "test_ood"}
    )
    counts: dict[str, int] = field(default_factory=dict)
    derived_probes: tuple[str, ...] = ()
    facts: dict[str, Split] = field(default_factory=dict)

    def __post_init__(self) -> None:
        self.derived_probes = tuple(self.derived_probes)
        bad = [p for p in self.derived_probes if p not in self.splits or p == "train"]
        if bad:
            raise ValueError(
                f"the {self.name} task's derived_probes name {bad}, which are not probes of it; "
                f"its probes are {self.probe_names}"
            )
        if "train" not in self.splits:
            raise ValueError(
                f"the {self.name} task has no 'train' split; splits['train'] holds what the model "
                "is trained on"
            )
        missing = sorted({"train", "id"} - set(self.key_probes))
        if missing:
            raise ValueError(
                f"the {self.name} task's key_probes lack {missing}: name the probes read as "
                "training ('train') and test ('id') accuracy (and optionally 'ood')"
            )
        unknown = {r: p for r, p in self.key_probes.items() if p not in self.splits}
        if unknown:
            raise ValueError(
                f"the {self.name} task's key_probes name probes it does not have: {unknown}; "
                f"its splits are {list(self.splits)}"
            )

    @property
    def train(self) -> Split:
        return self.splits["train"]

    @property
    def probe_names(self) -> list[str]:
        return [k for k in self.splits if k != "train"]

    def probes(self, max_size: int | None = 3000, seed: int = 0) -> dict[str, Split]:
        """Evaluation probes, each subsampled to at most ``max_size`` examples (fixed seed)."""
        return {
            k: (self.splits[k] if max_size is None else self.splits[k].sample(max_size, seed))
            for k in self.probe_names
        }

    def stats(self) -> dict[str, int | float]:
        """Sizes of the task: atomic facts (all / ID / OOD), inferred facts per split, phi."""
        out: dict[str, int | float] = dict(self.counts)
        for k, s in self.splits.items():
            out.setdefault(k, len(s))
        out["vocab"] = len(self.vocab)
        return out

    def fingerprint(self) -> str:
        """SHA-256 of the task's name, parameters and every split tensor, in order, except the
        :attr:`derived_probes` (a function of the rest).

        Runs store it, so a task regenerated from its parameters (by another version of numpy,
        say) can be checked to be the one the model was trained on."""
        h = hashlib.sha256(json.dumps([self.name, self.params.to_dict()]).encode())
        for name, split in self.splits.items():
            if name in self.derived_probes:
                continue
            for key, t in split.tensors().items():
                h.update(f"{name}/{key}{tuple(t.shape)}".encode())
                h.update(t.contiguous().numpy().tobytes())
        for name, split in self.facts.items():  # none for a generated task: digests unchanged
            for key, t in split.tensors().items():
                h.update(f"{FACTS_PREFIX}{name}/{key}{tuple(t.shape)}".encode())
                h.update(t.contiguous().numpy().tobytes())
        return h.hexdigest()

    def decode(self, split: str, i: int) -> str:
        """One example as text, e.g. ``"<e_3> <r_1> <r_5> -> <e_42>"``."""
        s = self.splits[split]
        n = int(s.answer_pos[i]) + 1
        return f"{self.vocab.decode(s.tokens[i, :n])} -> {self.vocab.decode([int(s.answers[i])])}"

    # ---------------------------------------------------------------- disk
    def save(self, path: str | os.PathLike) -> Path:
        """Write the task to a folder (``manifest.json`` + ``splits.safetensors``), atomically."""
        from grok_circuits.io import atomic_write_json, atomic_write_with

        path = Path(path)
        path.mkdir(parents=True, exist_ok=True)
        named = [*self.splits.items(), *((FACTS_PREFIX + k, s) for k, s in self.facts.items())]
        tensors = {
            f"{name}/{k}": v.contiguous() for name, s in named for k, v in s.tensors().items()
        }
        atomic_write_with(path / SPLITS_FILE, lambda tmp: save_file(tensors, str(tmp)))
        atomic_write_json(path / MANIFEST, self.manifest())
        return path

    def manifest(self) -> dict:
        return {
            "format_version": FORMAT_VERSION,
            "name": self.name,
            "params": self.params.to_dict(),
            "vocab": self.vocab.to_dict(),
            "positions": self.positions,
            "key_probes": self.key_probes,
            "counts": self.counts,
            "splits": {k: len(s) for k, s in self.splits.items()},
            "derived_probes": list(self.derived_probes),
            **({"facts": {k: len(s) for k, s in self.facts.items()}} if self.facts else {}),
        }

    @classmethod
    def from_folder(cls, path: str | os.PathLike, params_from_dict: Callable[[str, dict], Any]):
        """Read a task saved by :meth:`save`, its parameters rebuilt by
        ``params_from_dict(name, d)``, which knows the registered tasks (use
        :func:`grok_circuits.tasks.load_task`, which passes it)."""
        path = Path(path)
        if not (path / MANIFEST).is_file() or not (path / SPLITS_FILE).is_file():
            raise FileNotFoundError(
                f"{path} is not a saved task: it needs {MANIFEST} and {SPLITS_FILE} "
                "(write one with TaskData.save)"
            )
        manifest = json.loads((path / MANIFEST).read_text())
        if manifest.get("format_version") != FORMAT_VERSION:
            raise ValueError(
                f"{path / MANIFEST} has format_version {manifest.get('format_version')}, "
                f"this grok_circuits reads {FORMAT_VERSION}; regenerate it with make_task"
            )
        flat = load_file(str(path / SPLITS_FILE))
        grouped: dict[str, dict[str, Tensor]] = {}
        for key, t in flat.items():
            split, k = key.split("/", 1)
            grouped.setdefault(split, {})[k] = t
        order = list(manifest["splits"])
        facts = {
            k: Split.from_tensors(grouped[FACTS_PREFIX + k]) for k in manifest.get("facts", {})
        }
        return cls(
            name=manifest["name"],
            params=params_from_dict(manifest["name"], manifest["params"]),
            vocab=Vocab.from_dict(manifest["vocab"]),
            splits={k: Split.from_tensors(grouped[k]) for k in order},
            positions=manifest["positions"],
            key_probes=manifest["key_probes"],
            counts=manifest["counts"],
            derived_probes=tuple(manifest.get("derived_probes", ())),
            facts=facts,
        )


def make_split(
    prompts: np.ndarray, answers: np.ndarray, answer_pos: int, **meta: np.ndarray
) -> Split:
    """Build a :class:`Split` from numpy arrays of equal-length prompts."""
    n = prompts.shape[0]
    return Split(
        torch.from_numpy(np.ascontiguousarray(prompts, dtype=np.int64)),
        torch.full((n,), answer_pos, dtype=torch.int64),
        torch.from_numpy(np.ascontiguousarray(answers, dtype=np.int64)),
        {k: torch.from_numpy(np.ascontiguousarray(v, dtype=np.int64)) for k, v in meta.items()},
    )
