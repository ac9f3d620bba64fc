"""Hugging Face GPT-2 checkpoints and the paper's released data, on a stand-in written here.

References, each independent of the code under test: ``transformers``' own GPT2LMHeadModel
(logits) and GPT2Tokenizer (token ids), TransformerLens' own ``convert_gpt2_weights`` (3.x), a
greedy ``generate`` + exact-match evaluation written here the way the authors' ``eval_qa.py``
scores, split counts counted from the JSON files here, and a two-pass forward of the HF blocks
written here for the ``add_recurrence`` model.
"""

import json
import shutil
import warnings
from collections import Counter
from pathlib import Path

import pytest
import torch

from grok_circuits import backend
from grok_circuits.analysis.paper.bridge import trace_bridge_over_time
from grok_circuits.hf import CheckpointError, load_hf_model, read_tokenizer
from grok_circuits.model import count_loops
from grok_circuits.runs.load import load_run
from grok_circuits.runs.series import exact_match, model_tokens
from grok_circuits.tasks import make_pairs
from grok_circuits.tasks.paper import PaperDataError, load_paper_data, paper_token
from tests.paper_standin import train_series, write_comparison_data, write_composition_data

transformers = pytest.importorskip("transformers")

STEPS = [0, 30, 60]


@pytest.fixture(scope="session")
def standin(tmp_path_factory) -> tuple[Path, Path]:
    """A small dataset folder and a 3-checkpoint series (step 30 saved as pytorch_model.bin)."""
    root = tmp_path_factory.mktemp("standin")
    data = write_composition_data(
        root / "composition.30.6.2.0", n_entities=30, n_relations=6, out_degree=3, phi=2.0
    )
    run = train_series(data, root / "run", STEPS, n_layer=2, n_embd=32, n_head=2, bin_steps=(30,))
    return data, run


@pytest.fixture(scope="session")
def task(standin):
    return load_paper_data(standin[0])


def hf_model(folder: Path):
    return transformers.GPT2LMHeadModel.from_pretrained(folder).eval()


def hf_ids(folder: Path, text: str) -> list[int]:
    return transformers.GPT2Tokenizer.from_pretrained(folder)(text)["input_ids"]


def test_split_counts_equal_the_files(standin, task):
    data, _ = standin
    test = json.loads((data / "test.json").read_text())
    by_type = Counter(item["type"] for item in test)
    assert set(task.splits) == {"train", "valid", *by_type}
    for kind, n in by_type.items():
        assert len(task.splits[kind]) == n
    assert len(task.train) == len(json.loads((data / "train.json").read_text()))
    assert len(task.splits["valid"]) == len(json.loads((data / "valid.json").read_text()))
    # the first test item, decoded, is the file's text
    first = test[0]
    assert (
        task.decode(first["type"], 0).replace(" -> ", "").replace(" ", "") + "</a>"
        == (first["target_text"])
    )


def test_bridges_follow_the_atomic_facts_of_train_json(standin, task):
    data, _ = standin
    facts = {}
    for item in json.loads((data / "train.json").read_text()):
        toks = item["target_text"].strip("<>").split("><")
        if len(toks) == 4:  # h, r, t, /a
            facts[(toks[0], toks[1])] = toks[2]
    s = task.splits["test_inferred_iid"]
    for i in range(len(s)):
        h, r1, _ = task.vocab.decode(s.tokens[i]).strip("<>").split("> <")
        assert task.vocab.tokens[int(s.meta["bridge"][i])] == f"<{facts[(h, r1)]}>"


def test_logits_equal_transformers_on_every_checkpoint(standin, task):
    _, run_dir = standin
    tokens = model_tokens(task)
    s = task.splits["test_inferred_iid"]
    text = json.loads((standin[0] / "test.json").read_text())
    iid_text = [it["input_text"] for it in text if it["type"] == "test_inferred_iid"]
    for step in STEPS:
        folder = run_dir / f"checkpoint-{step}"
        model = load_hf_model(folder, tokens)
        ids = torch.tensor([hf_ids(folder, t) for t in iid_text])  # transformers' tokenizer
        rows = torch.tensor([read_tokenizer(folder).ids[t or "<|endoftext|>"] for t in tokens])
        assert torch.equal(rows[s.tokens], ids)  # our token ids are the tokenizer's
        with torch.no_grad():
            ours = model(s.tokens, return_type="logits")
            theirs = hf_model(folder)(ids).logits[..., rows]
        torch.testing.assert_close(ours[..., 1:], theirs[..., 1:], atol=1e-4, rtol=1e-4)
        assert bool((ours[..., 0] < -1e3).all())  # the padding id never competes


@pytest.mark.skipif(
    backend.model_class().__name__ != "HookedTransformer",
    reason="compares state dicts with TransformerLens 3.x's converter, for HookedTransformer",
)
def test_weights_equal_transformerlens_own_gpt2_conversion(standin, task):
    from transformer_lens.pretrained.weight_conversions import convert_gpt2_weights

    folder = standin[1] / "checkpoint-60"
    model = load_hf_model(folder, model_tokens(task))
    hf = hf_model(folder)
    theirs = convert_gpt2_weights(hf, model.cfg)
    tokens = model_tokens(task)
    rows = torch.tensor([read_tokenizer(folder).ids[t or "<|endoftext|>"] for t in tokens])
    ours = model.state_dict()
    for name, value in theirs.items():
        if name.startswith("embed."):
            value = value[rows]
        elif name == "unembed.W_U":
            value = value[:, rows][:, 1:]
            ours_value = ours[name][:, 1:]
            torch.testing.assert_close(ours_value, value)
            continue
        elif name == "unembed.b_U":
            continue
        torch.testing.assert_close(ours[name], value, msg=name)


def eval_res(pred: str, gold: str) -> int:
    """The authors' exact match, restated: compare up to the first </a>."""
    return int(pred.split("</a>")[0] == gold.split("</a>")[0])


def test_accuracy_equals_greedy_generate_with_exact_match(standin, task):
    data, run_dir = standin
    run = load_run(run_dir, data=data)
    rows = run.evaluate(eval_size=None, progress=False)
    items = json.loads((data / "test.json").read_text())
    for row in rows:
        folder = run_dir / f"checkpoint-{row['step']}"
        tok = transformers.GPT2Tokenizer.from_pretrained(folder)
        hf = hf_model(folder)
        hits: dict[str, list[int]] = {}
        for item in items:
            ids = torch.tensor([tok(item["input_text"])["input_ids"]])
            out = hf.generate(ids, max_new_tokens=3, do_sample=False, pad_token_id=0)
            pred = item["input_text"] + tok.decode(out[0, ids.shape[1] :])
            hits.setdefault(item["type"], []).append(eval_res(pred, item["target_text"]))
        for kind, h in hits.items():
            assert row[f"{kind}_acc"] == pytest.approx(sum(h) / len(h)), (row["step"], kind)


def test_padding_rows_that_win_every_argmax_change_nothing(standin, task, tmp_path):
    """Untie the head and set every row the task does not use (BPE and padding) to the mean
    answer-position state, scaled: transformers' argmax then lands on one of them for every
    query, while our accuracy and bridge MRR stay what they were."""
    data, run_dir = standin
    dst = tmp_path / "run" / "checkpoint-60"
    shutil.copytree(run_dir / "checkpoint-60", dst)
    hf = hf_model(dst)
    tokens = model_tokens(task)
    rows = torch.tensor([read_tokenizer(dst).ids[t or "<|endoftext|>"] for t in tokens])
    s = task.splits["test_inferred_iid"]
    with torch.no_grad():
        out = hf(rows[s.tokens], output_hidden_states=True)
        state = out.hidden_states[-1][:, -1].mean(0)
        head = hf.lm_head.weight.clone()
        unused = torch.ones(head.shape[0], dtype=torch.bool)
        unused[rows[1:]] = False
        head[unused] = 1e3 * state / state.norm()
    hf.config.tie_word_embeddings = False
    hf.lm_head.weight = torch.nn.Parameter(head)
    hf.save_pretrained(dst)
    reloaded = hf_model(dst)
    with torch.no_grad():
        winners = reloaded(rows[s.tokens]).logits[:, -1].argmax(-1)
    assert bool(unused[winners].all())  # the planted rows win every argmax there
    before = load_run(run_dir, data=data).evaluate(steps=[60], progress=False)[0]
    after = load_run(tmp_path / "run", data=data).evaluate(steps=[60], progress=False)[0]
    assert before == after
    from grok_circuits.analysis.lens.logit_lens import logit_lens

    lens = [
        logit_lens(load_run(r, data=data).model(60), s.tokens, s.meta["bridge"], 1).mrr
        for r in (run_dir, tmp_path / "run")
    ]
    torch.testing.assert_close(lens[0], lens[1])


def test_add_recurrence_runs_the_blocks_twice(standin, task, tmp_path):
    """Reference: transformers' own GPT-2 with the blocks written out twice (2n layers, block
    n + i a copy of block i), which is what the fork's add_recurrence computes."""
    data, _ = standin
    run_dir = train_series(
        data,
        tmp_path / "loop",
        [5],
        n_layer=2,
        n_embd=32,
        n_head=2,
        extra_config={"add_recurrence": True},
    )
    folder = run_dir / "checkpoint-5"
    model = load_hf_model(folder, model_tokens(task))
    assert model.cfg.n_layers == 4
    assert count_loops(model) == 2  # blocks 2, 3 hold blocks 0, 1's parameter objects
    hf = hf_model(folder)
    config = hf.config.to_dict()
    config.update(n_layer=4, add_recurrence=False)
    unrolled = transformers.GPT2LMHeadModel(transformers.GPT2Config(**config)).eval()
    state = hf.state_dict()
    for key, value in list(state.items()):
        if key.startswith("transformer.h."):
            i, rest = key.removeprefix("transformer.h.").split(".", 1)
            state[f"transformer.h.{int(i) + 2}.{rest}"] = value
    unrolled.load_state_dict(state)
    rows = torch.tensor(
        [read_tokenizer(folder).ids[t or "<|endoftext|>"] for t in model_tokens(task)]
    )
    s = task.splits["test_inferred_iid"]
    with torch.no_grad():
        ref = unrolled(rows[s.tokens]).logits[..., rows]
        plain = hf(rows[s.tokens]).logits[..., rows]  # stock transformers ignores the key
        ours = model(s.tokens, return_type="logits")
    torch.testing.assert_close(ours[..., 1:], ref[..., 1:], atol=1e-4, rtol=1e-4)
    assert not torch.allclose(ours[..., 1:], plain[..., 1:], atol=1e-3)


@pytest.mark.parametrize("key", ["share_mlp", "add_memory", "re_embed"])
def test_a_fork_key_that_changes_the_computation_is_refused(standin, task, tmp_path, key):
    folder = tmp_path / "checkpoint-0"
    shutil.copytree(standin[1] / "checkpoint-0", folder)
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: True}))
    with pytest.raises(CheckpointError, match=key):
        load_hf_model(folder, model_tokens(task))


# ----------------------------------------------------------------------------- bad input
def test_a_folder_with_no_checkpoints_is_refused(standin, tmp_path):
    with pytest.raises(ValueError, match="holds no checkpoint-<step>/ folder"):
        load_run(tmp_path, data=standin[0])


def test_a_missing_tokenizer_is_refused(standin, task, tmp_path):
    folder = tmp_path / "checkpoint-0"
    shutil.copytree(standin[1] / "checkpoint-0", folder)
    for f in ("vocab.json", "added_tokens.json", "merges.txt", "tokenizer_config.json"):
        (folder / f).unlink()
    with pytest.raises(CheckpointError, match="no tokenizer"):
        load_run(tmp_path, data=standin[0])


@pytest.mark.parametrize("eos", [None, {"lstrip": False}], ids=["null", "no-content"])
def test_an_end_of_text_token_that_is_no_string_is_refused(tmp_path, eos):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "<|endoftext|>": 1}))
    (tmp_path / "special_tokens_map.json").write_text(json.dumps({"eos_token": eos}))
    with pytest.raises(CheckpointError, match="eos_token as a string or as"):
        read_tokenizer(tmp_path)


def test_an_end_of_text_token_saved_as_an_added_token_is_read(tmp_path):
    (tmp_path / "vocab.json").write_text(json.dumps({"a": 0, "</s>": 1}))
    (tmp_path / "special_tokens_map.json").write_text(
        json.dumps({"eos_token": {"content": "</s>", "lstrip": False}})
    )
    tok = read_tokenizer(tmp_path)
    assert tok.eos == "</s>" and tok.ids[tok.eos] == 1


def test_a_token_the_tokenizer_lacks_is_refused(standin, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(standin[0], data)
    vocab = json.loads((data / "vocab.json").read_text())
    (data / "vocab.json").write_text(json.dumps(vocab + ["<never_seen>"]))
    with pytest.raises(CheckpointError, match="<never_seen> of the data is not in the tokenizer"):
        load_run(standin[1], data=data)


def test_a_truncated_weights_file_is_skipped_with_one_warning(standin, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(standin[1], run_dir)
    weights = run_dir / "checkpoint-60" / "model.safetensors"
    weights.write_bytes(weights.read_bytes()[:-100])
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        run = load_run(run_dir, data=standin[0])
        assert run.steps == [0, 30]
        assert run.steps == [0, 30]
    assert len([w for w in caught if "truncated" in str(w.message)]) == 1
    with pytest.raises(ValueError, match="truncated"):
        run.model(60)


def test_a_truncated_bin_file_is_skipped(standin, tmp_path):
    run_dir = tmp_path / "run"
    shutil.copytree(standin[1], run_dir)
    weights = run_dir / "checkpoint-30" / "pytorch_model.bin"
    weights.write_bytes(weights.read_bytes()[: len(weights.read_bytes()) // 2])
    with pytest.warns(UserWarning, match="checkpoint-30"):
        assert load_run(run_dir, data=standin[0]).steps == [0, 60]


def test_a_data_folder_of_another_format_is_refused(tmp_path):
    make = __import__("grok_circuits").make_task
    make("composition", preset="tutorial").save(tmp_path / "task")
    with pytest.raises(PaperDataError, match="load_task"):
        load_paper_data(tmp_path / "task")
    (tmp_path / "other").mkdir()
    for name in ("train.json", "valid.json", "test.json"):
        (tmp_path / "other" / name).write_text('[{"question": "?"}]')
    (tmp_path / "other" / "vocab.json").write_text('["<e_0>", "<r_0>", "</a>"]')
    with pytest.raises(PaperDataError, match=r"train.json, item 0: an item needs 'input_text'"):
        load_paper_data(tmp_path / "other")


def test_a_two_hop_query_without_its_facts_is_refused(standin, tmp_path):
    data = tmp_path / "data"
    shutil.copytree(standin[0], data)
    train = json.loads((data / "train.json").read_text())
    two_hop = next(i for i, it in enumerate(train) if it["input_text"].count("<") == 3)
    h, r1 = train[two_hop]["input_text"].strip("<>").split("><")[:2]
    kept = [it for it in train if it["input_text"] != f"<{h}><{r1}>"]
    (data / "train.json").write_text(json.dumps(kept))
    with pytest.raises(PaperDataError, match=r"train.json, item \d+: its first hop"):
        load_paper_data(data)


def test_exact_match_needs_the_end_token(task, standin):
    model = load_hf_model(standin[1] / "checkpoint-60", model_tokens(task))
    s = task.splits["train_inferred"]
    hits = exact_match(model, s, task.vocab)
    logits = model(torch.cat([s.tokens, s.answers[:, None]], 1), return_type="logits")
    top1 = logits[:, -2].argmax(-1) == s.answers
    end = logits[:, -1].argmax(-1) == task.vocab.token_id("</a>")
    assert torch.equal(hits, top1 & end)


# ----------------------------------------------------------------------------- comparison
@pytest.fixture(scope="session", params=[False, True], ids=["comparison", "complex"])
def comparison(request, tmp_path_factory):
    root = tmp_path_factory.mktemp("comparison")
    return write_comparison_data(root / "data", complex_format=request.param)


def _facts_from_json(folder: Path) -> dict[tuple[str, str], int]:
    values = {}
    for name in ("train.json", "test.json"):
        for item in json.loads((folder / name).read_text()):
            if item["type"] in ("id_atomic", "ood_atomic"):
                toks = item["target_text"].replace("<q>", "").replace("<mask>", "")
                toks = toks.replace("</q>", "").replace("<a>", "").strip("<>").split("><")
                values[(toks[0], toks[1])] = int(toks[2])
    return values


def test_comparison_splits_values_and_swaps_follow_the_files(comparison):
    task = load_paper_data(comparison)
    test = json.loads((comparison / "test.json").read_text())
    for kind, n in Counter(item["type"] for item in test).items():
        assert len(task.splits[kind]) == n
    complex_format = "test_hard" in task.splits
    assert task.name == ("complex" if complex_format else "comparison")
    values = _facts_from_json(comparison)
    v = task.vocab
    probe = task.key_probes["id"]
    s = task.splits[probe]
    pos = task.positions
    for i in range(len(s)):
        attr = v.tokens[int(s.tokens[i, pos["attr"]])].strip("<>")
        e1 = v.tokens[int(s.tokens[i, pos["e1"]])].strip("<>")
        e2 = v.tokens[int(s.tokens[i, pos["e2"]])].strip("<>")
        assert int(s.meta["value1"][i]) == values[(e1, attr)]
        assert int(s.meta["value2"][i]) == values[(e2, attr)]
    pairs = make_pairs(task, "e1", split=probe, n_examples=20)
    for i in range(len(pairs)):
        attr = v.tokens[int(pairs.corrupt[i, pos["attr"]])].strip("<>")
        e1 = v.tokens[int(pairs.corrupt[i, pos["e1"]])].strip("<>")
        e2 = v.tokens[int(pairs.corrupt[i, pos["e2"]])].strip("<>")
        sign = (values[(e1, attr)] > values[(e2, attr)]) - (values[(e1, attr)] < values[(e2, attr)])
        label = paper_token(v.tokens[int(pairs.corrupt_answers[i])])
        assert label == f"<{attr}_{sign + 1}>"
        assert int(pairs.answer_pos[i]) == max(pos.values())


def test_complex_exact_match_equals_generate_with_the_authors_scoring(comparison, tmp_path):
    task = load_paper_data(comparison)
    if task.name != "complex":
        pytest.skip("the <a> ... </a> answers are the complex-reasoning format's")
    run_dir = train_series(comparison, tmp_path / "run", [150], n_layer=2, n_embd=32, n_head=2)
    run = load_run(run_dir, data=task)
    row = run.evaluate(eval_size=None, progress=False)[0]
    folder = run_dir / "checkpoint-150"
    tok = transformers.GPT2Tokenizer.from_pretrained(folder)
    hf = hf_model(folder)
    hits: dict[str, list[int]] = {}
    for item in json.loads((comparison / "test.json").read_text()):
        ids = torch.tensor([tok(item["input_text"])["input_ids"]])
        out = hf.generate(ids, max_new_tokens=4, do_sample=False, pad_token_id=0)
        pred = item["input_text"] + tok.decode(out[0, ids.shape[1] :])
        gold = item["target_text"].split("</a>")[0]
        pred = pred.split("</a>")[0]  # eval_qa.py: compare between <a> and </a>
        ok = pred.count("<a>") == 1 and pred.split("<a>")[1] == gold.split("<a>")[1]
        hits.setdefault(item["type"], []).append(int(ok))
    assert any(sum(h) for h in hits.values())  # the model gets some right: a real comparison
    for kind, h in hits.items():
        assert row[f"{kind}_acc"] == pytest.approx(sum(h) / len(h)), kind


# ----------------------------------------------------------------------------- every analysis
def test_every_analysis_runs_on_a_series_and_reads_the_right_checkpoint(standin, task):
    from grok_circuits.analysis import (
        circuit_reuse,
        compare_stages,
        edge_attribution,
        faithfulness,
        find_circuit,
        over_checkpoints,
        trace_bridge,
        trace_bridge_over_time,
    )

    data, run_dir = standin
    run = load_run(run_dir, data=data)
    over = trace_bridge_over_time(run, n_examples=40)
    assert over.steps == tuple(STEPS)
    for i, step in enumerate(STEPS):  # each row is that checkpoint's own trace
        alone = trace_bridge(
            load_hf_model(run_dir / f"checkpoint-{step}", model_tokens(task)), task, n_examples=40
        )
        torch.testing.assert_close(over.strength[i], alone.strength.scores)
    stages = compare_stages(run, memorizing=30, generalizing=60, n_examples=40)
    torch.testing.assert_close(
        stages.generalizing.strength.scores - stages.memorizing.strength.scores,
        over.strength[2] - over.strength[1],
    )
    model = run.model(60)
    scores = edge_attribution(model, task, n_examples=40)
    faith = faithfulness(model, task, scores, n_random=1, n_examples=40)
    whole = faith.sizes == faith.n_edges
    assert bool(whole.any())
    torch.testing.assert_close(faith.faithfulness[whole], torch.ones(1))  # the graph is the model
    assert len(find_circuit(model, task, n_examples=40, top_k=3).components) == 3
    reuse = circuit_reuse(model, task, task, top_k=3, n_examples=40, eval_split="test_inferred_iid")
    assert reuse is not None
    sizes = over_checkpoints(run, lambda m: m.cfg.d_model, progress=False)
    assert list(sizes.results) == [32, 32, 32]


def test_the_cli_reports_and_analyses_a_series_without_writing_into_it(standin, tmp_path):
    from grok_circuits.cli import main

    data, run_dir = standin
    before = sorted(str(p) for p in run_dir.rglob("*"))
    assert main(["report", str(run_dir), "--data", str(data), "--out", str(tmp_path)]) == 0
    assert (tmp_path / "curves.png").is_file()
    out = tmp_path / "analysis"
    args = ["analyze", str(run_dir), "--data", str(data), "--n-examples", "40", "--out", str(out)]
    assert main(args) == 0
    assert any(out.glob("*.png"))
    assert sorted(str(p) for p in run_dir.rglob("*")) == before
    assert main(["report", str(run_dir)]) == 2  # no --data: one error line


def test_the_paper_figure_draws_from_a_series(standin):
    import grok_circuits.viz as viz

    run = load_run(standin[1], data=standin[0])
    fig = viz.plot_paper_figure(trace_bridge_over_time(run, n_examples=40), run=run)
    assert len(fig.axes) >= 3
    assert "step 0 to 60" in fig.axes[2].get_title()


def test_a_fast_tokenizer_json_gives_the_same_ids(standin, task, tmp_path):
    """Today's layout (tokenizer.json alone, written by transformers' fast tokenizer) reads to
    the same ids as the release's slow layout."""
    src = standin[1] / "checkpoint-0"
    dst = tmp_path / "checkpoint-0"
    dst.mkdir()
    for name in ("config.json", "model.safetensors"):
        shutil.copy(src / name, dst / name)
    transformers.GPT2TokenizerFast.from_pretrained(src).save_pretrained(dst)
    for name in ("vocab.json", "merges.txt", "added_tokens.json"):
        (dst / name).unlink(missing_ok=True)
    assert (dst / "tokenizer.json").is_file()
    slow, fast = read_tokenizer(src), read_tokenizer(dst)
    assert [fast.ids[t or fast.eos] for t in model_tokens(task)] == [
        slow.ids[t or slow.eos] for t in model_tokens(task)
    ]


class _Zero(torch.nn.Module):
    def forward(self, x):
        return torch.zeros_like(x)


@pytest.mark.parametrize("key", ["no_ln", "no_mlp"])
def test_the_forks_no_ln_and_no_mlp_are_computed(standin, task, tmp_path, key):
    """Reference: transformers' GPT-2 with the fork's change made by hand (every LayerNorm an
    identity; every MLP adding nothing), on weights without those modules."""
    folder = tmp_path / "checkpoint-0"
    shutil.copytree(standin[1] / "checkpoint-60", folder)
    hf = hf_model(folder)
    for block in hf.transformer.h:
        if key == "no_ln":
            block.ln_1, block.ln_2 = torch.nn.Identity(), torch.nn.Identity()
        else:
            block.mlp = _Zero()
    if key == "no_ln":
        hf.transformer.ln_f = torch.nn.Identity()
    drop = ("ln_",) if key == "no_ln" else (".mlp.",)
    state = {k: v for k, v in hf.state_dict().items() if not any(d in k for d in drop)}
    from safetensors.torch import save_file

    state.pop("lm_head.weight", None)  # tied
    save_file({k: v.contiguous() for k, v in state.items()}, str(folder / "model.safetensors"))
    config = json.loads((folder / "config.json").read_text())
    (folder / "config.json").write_text(json.dumps({**config, key: True}))
    model = load_hf_model(folder, model_tokens(task))
    tokens = model_tokens(task)
    rows = torch.tensor([read_tokenizer(folder).ids[t or "<|endoftext|>"] for t in tokens])
    s = task.splits["test_inferred_iid"]
    with torch.no_grad():
        ref = hf(rows[s.tokens]).logits[..., rows]
        ours = model(s.tokens, return_type="logits")
    torch.testing.assert_close(ours[..., 1:], ref[..., 1:], atol=1e-4, rtol=1e-4)


def test_the_shipped_standin_equals_transformers_on_every_checkpoint_and_probe():
    """data/paper_standin (tutorial 10's series): every checkpoint, every probe, up to each
    prompt's answer position, against transformers' own forward pass."""
    root = Path(__file__).resolve().parent.parent / "data" / "paper_standin"
    task = load_paper_data(root / "composition.100.20.8.0")
    run = load_run(root / "composition.100.20.8.0_1.0_4", data=task)
    assert run.steps == [0, 1000, 2000, 3500, 6000, 9000]
    for step in run.steps:
        folder = run.folder(step)
        tok = read_tokenizer(folder)
        rows = torch.tensor([tok.ids[t or tok.eos] for t in model_tokens(task)])
        model, hf = run.model(step, "cpu"), hf_model(folder)
        for name, s in task.probes(None).items():
            with torch.no_grad():
                ours = model(s.tokens, return_type="logits")[..., 1:]
                theirs = hf(rows[s.tokens]).logits[..., rows][..., 1:]
            upto = torch.arange(s.tokens.shape[1])[None] <= s.answer_pos[:, None]
            torch.testing.assert_close(ours[upto], theirs[upto], atol=1e-4, rtol=1e-4, msg=name)


# ----------------------------------------------------------------------------- metrics cache
def test_evaluated_metrics_are_kept_outside_the_folder_and_redone_when_a_checkpoint_changes(
    standin, tmp_path, monkeypatch
):
    import grok_circuits.runs.series as series

    run_dir = tmp_path / "run"
    shutil.copytree(standin[1], run_dir)
    monkeypatch.setenv("GROK_CIRCUITS_CACHE", str(tmp_path / "cache"))
    loaded = []
    real = series.load_hf_model
    monkeypatch.setattr(
        series, "load_hf_model", lambda f, *a, **k: loaded.append(f) or real(f, *a, **k)
    )
    first = load_run(run_dir, data=standin[0]).evaluate(progress=False)
    assert len(loaded) == 3
    assert load_run(run_dir, data=standin[0]).evaluate(progress=False) == first
    assert len(loaded) == 3  # read back, not evaluated again
    assert not any(p.name.endswith(".json") and "cache" in p.name for p in run_dir.rglob("*"))
    weights = run_dir / "checkpoint-60" / "model.safetensors"
    weights.write_bytes(weights.read_bytes())  # the same bytes, a new modification time
    assert load_run(run_dir, data=standin[0]).evaluate(progress=False) == first
    assert [f.name for f in loaded[3:]] == ["checkpoint-60"]
    (tmp_path / "cache" / "metrics").iterdir().__next__().write_text("{not json")
    assert load_run(run_dir, data=standin[0]).evaluate(progress=False) == first  # rebuilt
    assert len(loaded) == 7
    from grok_circuits.runs.series import load_series

    nothing = tmp_path / "nothing"
    monkeypatch.setenv("GROK_CIRCUITS_CACHE", str(nothing))
    load_series(run_dir, standin[0], cache=False).evaluate(progress=False)
    assert not nothing.exists()
