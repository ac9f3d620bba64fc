"""A stand-in for the paper's released data and checkpoints, written from scratch.

Wang et al. (2024) released dataset folders and step-indexed ``checkpoint-<step>/`` folders of
``GPT2LMHeadModel`` runs (see ``grok_circuits.tasks.paper`` and ``grok_circuits.hf``); they
cannot be downloaded here, so this script writes folders of the same layout from our reading of
the authors' public code:

- :func:`write_composition_data`: a composition dataset folder (``train.json``, ``valid.json``,
  ``test.json``, ``vocab.json``) built the way ``composition.ipynb`` builds one: every entity
  heads ``out_degree`` facts with distinct relations and random tails, 5% of the atomic edges are
  OOD, two-hop paths with both hops ID are the training pool (a small share held out as
  ``test_inferred_iid``), both hops OOD are ``test_inferred_ood``, and the training set is every
  atomic fact plus ``round(phi * n_id_atomic)`` sampled inferred facts; tokens written with no
  spaces, targets closed by ``</a>``. Its own seeded generator, not the notebook's.
- :func:`write_tokenizer`: a tiny byte-level BPE (256 byte tokens, a few merges, then
  ``<|endoftext|>``) plus the dataset's tokens added after it, saved in the slow ``GPT2Tokenizer``
  layout that transformers 4.37 wrote (``vocab.json``, ``merges.txt``, ``added_tokens.json``,
  ``special_tokens_map.json``, ``tokenizer_config.json``; no ``tokenizer.json``). It stands in
  for GPT-2's BPE, which is not available offline.
- :func:`train_series`: a small ``GPT2LMHeadModel`` trained with ``transformers`` the way the
  authors' ``main.py`` trains (AdamW, constant schedule after a warm-up, the loss on the answer
  and ``</a>`` only, targets padded with the end-of-text token), embeddings resized with
  ``pad_to_multiple_of=8``, saved as ``checkpoint-<step>/`` with the tokenizer beside each.

``python tests/paper_standin.py OUT --steps 0 500 ... 9000`` writes the stand-in shipped in
``data/paper_standin/`` (about 35 minutes on two CPU cores; ``data/README.md`` says which
checkpoints were kept); the tests call the functions for smaller, quicker ones.
"""

import argparse
import functools
import json
import shutil
import sys
from pathlib import Path

import numpy as np
import torch

SPECIALS = ["<mask>", "<sep>", "<a>", "</a>", "<q>", "</q>"]
EOS = "<|endoftext|>"
#: A handful of merges over the byte alphabet, enough to make it a BPE.
MERGES = [("Ġ", "t"), ("h", "e"), ("Ġt", "he"), ("i", "n"), ("e", "r"), ("a", "n")]


def _item(tokens: list[str], answer: str, kind: str | None = None) -> dict:
    text = "".join(tokens)
    item = {"input_text": text, "target_text": text + answer + "</a>"}
    if kind is not None:
        item["type"] = kind
    return item


def _choose(rng: np.random.Generator, items: list, n: int) -> list:
    """``n`` of ``items`` drawn without replacement, in their order (all if fewer)."""
    if n >= len(items):
        return list(items)
    return [items[i] for i in sorted(rng.choice(len(items), n, replace=False).tolist())]


def write_composition_data(
    out: Path,
    n_entities: int = 100,
    n_relations: int = 20,
    out_degree: int = 10,
    phi: float = 8.0,
    ood_fraction: float = 0.05,
    test_id_fraction: float = 0.05,
    test_size: int = 300,
    seed: int = 0,
) -> Path:
    """A composition dataset folder in the authors' format (see the module docstring)."""
    rng = np.random.default_rng(seed)
    ents = [f"<e_{i}>" for i in range(n_entities)]
    rels = [f"<r_{i}>" for i in range(n_relations)]
    facts = []  # (h, r, t)
    for h in range(n_entities):
        for r in sorted(rng.choice(n_relations, out_degree, replace=False).tolist()):
            facts.append((h, r, int(rng.integers(n_entities))))
    ood = set(rng.choice(len(facts), round(ood_fraction * len(facts)), replace=False).tolist())
    is_ood = {f: i in ood for i, f in enumerate(facts)}
    out_of: dict[int, list] = {}
    for f in facts:
        out_of.setdefault(f[0], []).append(f)
    train_pool, test_iid, test_ood = [], [], []
    for h in range(n_entities):
        for first in out_of[h]:
            for second in out_of.get(first[2], []):
                query = ([ents[h], rels[first[1]], rels[second[1]]], ents[second[2]])
                if is_ood[first] and is_ood[second]:
                    test_ood.append(query)
                elif not (is_ood[first] or is_ood[second]):
                    (test_iid if rng.random() < test_id_fraction else train_pool).append(query)

    choose = functools.partial(_choose, rng)
    id_facts = [f for f in facts if not is_ood[f]]
    ood_facts = [f for f in facts if is_ood[f]]
    n_train = round(phi * len(id_facts))
    if n_train > len(train_pool):
        raise ValueError(
            f"phi={phi} needs {n_train} inferred facts; the pool has {len(train_pool)}"
        )
    train_inferred = choose(train_pool, n_train)
    atomic = lambda f, kind=None: _item([ents[f[0]], rels[f[1]]], ents[f[2]], kind)  # noqa: E731
    inferred = lambda q, kind=None: _item(q[0], q[1], kind)  # noqa: E731
    ood_probe = choose(test_ood, test_size)
    probes = (
        [atomic(f, "id_atomic") for f in choose(id_facts, test_size)]
        + [atomic(f, "ood_atomic") for f in choose(ood_facts, test_size)]
        + [inferred(q, "train_inferred") for q in choose(train_inferred, test_size)]
        + [inferred(q, "test_inferred_iid") for q in choose(test_iid, test_size)]
        + [inferred(q, "test_inferred_ood") for q in ood_probe]
    )
    out.mkdir(parents=True, exist_ok=True)
    files = {
        "train.json": [atomic(f) for f in id_facts + ood_facts]
        + [inferred(q) for q in train_inferred],
        "valid.json": [inferred(q) for q in ood_probe],
        "test.json": probes,
        "vocab.json": ents + rels + SPECIALS,
    }
    for name, data in files.items():
        (out / name).write_text(json.dumps(data))
    return out


def write_comparison_data(
    out: Path,
    n_entities: int = 40,
    n_attributes: int = 3,
    n_values: int = 6,
    phi: float = 3.0,
    complex_format: bool = False,
    test_size: int = 200,
    seed: int = 0,
) -> Path:
    """A comparison dataset folder in the authors' format (``comparison.ipynb``): per
    attribute 90% of the entities ID, all ordered ID x ID pairs the training pool (10% held out
    as ``test_inferred_iid``), OOD x OOD pairs ``test_inferred_ood``; values ``<k>``, labels
    ``<attr_j_0|1|2>`` (<, =, >). With ``complex_format``, the complex-reasoning layout
    (``complex_reasoning.ipynb``): questions closed by ``</q>``, answers opened by ``<a>``,
    atomic facts ``<q><e><attr><mask></q>``, OOD values never in training, ID x OOD comparisons
    trained on (``train_inferred_cross``), and ``test_hard`` (here: OOD x OOD queries, without
    the search for ones only chaining can answer, which the loader does not need)."""
    rng = np.random.default_rng(seed)
    ents = [f"<e_{i}>" for i in range(n_entities)]
    attrs = [f"<attr_{j}>" for j in range(n_attributes)]
    values = rng.integers(0, n_values, size=(n_entities, n_attributes))
    labels = [[f"<attr_{j}_{k}>" for k in range(3)] for j in range(n_attributes)]
    vocab = ents + attrs + [f"<{k}>" for k in range(n_values)] + SPECIALS
    vocab += [t for row in labels for t in row]

    def atomic(e: int, a: int, kind: str) -> dict:
        v = f"<{values[e, a]}>"
        if complex_format:
            text = f"<q>{ents[e]}{attrs[a]}<mask></q>"
            return {"input_text": text, "target_text": text + f"<a>{v}</a>", "type": kind}
        return _item([ents[e], attrs[a]], v, kind)

    def compare(a: int, e1: int, e2: int, kind: str) -> dict:
        label = labels[a][int(np.sign(values[e1, a] - values[e2, a])) + 1]
        text = f"{attrs[a]}<q>{ents[e1]}<mask>{ents[e2]}"
        if complex_format:
            text += "</q>"
            return {"input_text": text, "target_text": text + f"<a>{label}</a>", "type": kind}
        return {"input_text": text, "target_text": text + label + "</a>", "type": kind}

    items: dict[str, list] = {}
    for a in range(n_attributes):
        ood = set(rng.choice(n_entities, round(0.1 * n_entities), replace=False).tolist())
        for e in range(n_entities):
            kind = "ood_atomic" if e in ood else "id_atomic"
            items.setdefault(kind, []).append(atomic(e, a, kind))
        for e1 in range(n_entities):
            for e2 in range(e1 + 1, n_entities):
                if e1 in ood and e2 in ood:
                    kind = "test_inferred_ood"
                elif e1 not in ood and e2 not in ood:
                    kind = "test_inferred_iid" if rng.random() < 0.1 else "train_inferred"
                elif complex_format:
                    kind = "train_inferred_cross"
                else:
                    continue
                if complex_format and kind == "train_inferred":
                    kind = "train_inferred_topleft"
                items.setdefault(kind, []).append(compare(a, e1, e2, kind))
                items[kind].append(compare(a, e2, e1, kind))

    choose = functools.partial(_choose, rng)
    n_id = len(items["id_atomic"])
    if complex_format:
        train = items["id_atomic"] + choose(items["train_inferred_topleft"], round(phi * n_id))
        train += choose(items["train_inferred_cross"], round(phi * n_id / 4))
        hard = [dict(it, type="test_hard") for it in choose(items["test_inferred_ood"], 30)]
        valid = choose(items["test_inferred_ood"], test_size)
        kinds = ["test_inferred_iid", "id_atomic"]
        test = (
            valid + items["ood_atomic"] + [it for k in kinds for it in choose(items[k], test_size)]
        )
        test += [it for it in train if it["type"].startswith("train_inferred")][:test_size] + hard
    else:
        train_inferred = choose(items["train_inferred"], round(phi * n_id))
        train = items["id_atomic"] + items["ood_atomic"] + train_inferred
        valid = choose(items["test_inferred_ood"], test_size)
        kinds = ["id_atomic", "ood_atomic", "test_inferred_iid"]
        test = valid + [it for k in kinds for it in choose(items[k], test_size)]
        test += choose(train_inferred, test_size)
    out.mkdir(parents=True, exist_ok=True)
    for name, data in (("train.json", train), ("valid.json", valid), ("test.json", test)):
        (out / name).write_text(json.dumps(data))
    (out / "vocab.json").write_text(json.dumps(vocab))
    return out


def _bytes_to_unicode() -> dict[int, str]:
    """GPT-2's byte -> printable character map (a standard construction)."""
    keep = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAC + 1))
    keep += list(range(0xAE, 0xFF + 1))
    chars, extra = {}, 0
    for b in range(256):
        if b in keep:
            chars[b] = chr(b)
        else:
            chars[b] = chr(256 + extra)
            extra += 1
    return chars


def write_tokenizer(out: Path, added: list[str], base_size: int = 0) -> dict[str, int]:
    """A tiny byte-level BPE with ``added`` tokens after it, in the slow GPT-2 layout. Returns
    the token -> id map. ``base_size``: fill the BPE vocabulary with placeholder tokens up to
    this many (GPT-2's is 50,257, ``<|endoftext|>`` last), for a checkpoint of GPT-2's shape."""
    vocab = {c: i for i, c in enumerate(_bytes_to_unicode().values())}
    for a, b in MERGES:
        vocab[a + b] = len(vocab)
    while len(vocab) < base_size - 1:
        vocab[f"placeholder{len(vocab)}"] = len(vocab)
    vocab[EOS] = len(vocab)
    added_ids = {t: len(vocab) + i for i, t in enumerate(added)}
    out.mkdir(parents=True, exist_ok=True)
    (out / "vocab.json").write_text(json.dumps(vocab))
    (out / "merges.txt").write_text("#version: 0.2\n" + "".join(f"{a} {b}\n" for a, b in MERGES))
    (out / "added_tokens.json").write_text(json.dumps(added_ids))
    special = {"bos_token": EOS, "eos_token": EOS, "unk_token": EOS, "pad_token": EOS}
    (out / "special_tokens_map.json").write_text(json.dumps(special))
    config = {
        "tokenizer_class": "GPT2Tokenizer",
        "add_prefix_space": False,
        "model_max_length": 1024,
        "errors": "replace",
        **special,
    }
    (out / "tokenizer_config.json").write_text(json.dumps(config))
    return {**vocab, **added_ids}


def _encode(text: str, ids: dict[str, int]) -> list[int]:
    pieces = [p + ">" for p in text.split(">") if p]
    return [ids[p] for p in pieces]


def train_series(
    data: Path,
    out: Path,
    steps: list[int],
    n_layer: int = 4,
    n_embd: int = 64,
    n_head: int = 4,
    lr: float = 1e-3,
    weight_decay: float = 0.1,
    warmup: int = 50,
    batch_size: int = 512,
    seed: int = 42,
    bin_steps: tuple[int, ...] = (),
    extra_config: dict | None = None,
    progress: bool = False,
) -> Path:
    """Train a ``GPT2LMHeadModel`` on ``data`` as the authors' ``main.py`` does and save
    ``out/checkpoint-<step>/`` at each of ``steps`` (as ``pytorch_model.bin`` at
    ``bin_steps``, else ``model.safetensors``)."""
    from transformers import GPT2Config, GPT2LMHeadModel

    added = json.loads((data / "vocab.json").read_text())
    tok_dir = out / "_tokenizer"
    ids = write_tokenizer(tok_dir, added)
    items = json.loads((data / "train.json").read_text())
    max_len = max(len(_encode(it["target_text"], ids)) for it in items)
    pad = ids[EOS]
    inputs = torch.full((len(items), max_len), pad, dtype=torch.long)
    labels = torch.full((len(items), max_len), -100, dtype=torch.long)
    for i, it in enumerate(items):
        target, prompt = _encode(it["target_text"], ids), _encode(it["input_text"], ids)
        inputs[i, : len(target)] = torch.tensor(target)
        labels[i, len(prompt) : len(target)] = torch.tensor(target[len(prompt) :])
    torch.manual_seed(seed)
    n_vocab = len(set(ids.values()))
    config = GPT2Config(
        vocab_size=n_vocab,
        n_positions=16,
        n_embd=n_embd,
        n_layer=n_layer,
        n_head=n_head,
        resid_pdrop=0.0,
        embd_pdrop=0.0,
        attn_pdrop=0.0,
        bos_token_id=pad,
        eos_token_id=pad,
    )
    model = GPT2LMHeadModel(config)
    model.resize_token_embeddings(n_vocab, pad_to_multiple_of=8)
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    for key, value in (extra_config or {}).items():
        setattr(model.config, key, value)
    decay = [p for n, p in model.named_parameters() if not any(k in n for k in ("bias", "ln_"))]
    rest = [p for n, p in model.named_parameters() if any(k in n for k in ("bias", "ln_"))]
    opt = torch.optim.AdamW(
        [{"params": decay, "weight_decay": weight_decay}, {"params": rest, "weight_decay": 0.0}],
        lr=lr,
    )
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: min(1.0, (s + 1) / warmup))
    g = torch.Generator().manual_seed(seed)
    order, at = torch.randperm(len(items), generator=g), 0

    def save(step: int) -> None:
        folder = out / f"checkpoint-{step}"
        model.save_pretrained(folder, safe_serialization=step not in bin_steps)
        if step in bin_steps:  # as an older torch wrote it: one pickled state dict, zip format
            (folder / "model.safetensors").unlink(missing_ok=True)
            torch.save(model.state_dict(), folder / "pytorch_model.bin")
        for f in tok_dir.iterdir():
            shutil.copy(f, folder / f.name)

    model.train()
    for step in range(max(steps) + 1):
        if step in steps:
            save(step)
        if step == max(steps):
            break
        if at + batch_size > len(items):
            order, at = torch.randperm(len(items), generator=g), 0
        idx = order[at : at + batch_size]
        at += batch_size
        loss = model(inputs[idx], labels=labels[idx]).loss
        opt.zero_grad()
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        sched.step()
        if progress and step % 100 == 0:
            print(f"step {step} loss {loss.item():.4f}", file=sys.stderr, flush=True)
    shutil.rmtree(tok_dir)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("out", type=Path)
    parser.add_argument("--steps", type=int, nargs="+", default=[0, 300, 600, 1500, 3000])
    args = parser.parse_args()
    data = write_composition_data(args.out / "composition.100.20.8.0")
    train_series(data, args.out / "composition.100.20.8.0_0.1_4", args.steps, progress=True)


if __name__ == "__main__":
    main()
