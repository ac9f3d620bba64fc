"""The paper's checkpoints at their exact shape, on the CPU: loading and the analyses.

The released runs of Wang et al. (2024) are ``GPT2LMHeadModel`` folders of 8 layers, d_model 768
and 12 heads, with GPT-2's 50,257 BPE tokens plus the dataset's 2,206 tokens (2,000 entities,
200 relations, 6 specials), resized to 52,464 rows (``pad_to_multiple_of=8``). They cannot be
downloaded here, so this script writes one of that exact shape with random weights (the
computation does not depend on the values), a paper-scale composition dataset in the released
format (2,000 entities, 200 relations, out-degree 20, phi 7.2: 313,600 training items), and a
tokenizer of GPT-2's size (a placeholder BPE vocabulary of 50,257 tokens, then the added ones).

It times, in one process:

- ``load_paper_data`` on the dataset folder;
- the metrics of one checkpoint (``run.evaluate``: exact match on the default sample of every
  probe; kept in a cache after the first time);
- loading a checkpoint as a TransformerLens model (``run.model(step)``), against
  ``transformers``' own ``GPT2LMHeadModel.from_pretrained`` of the same folder (the baseline);
- ``trace_bridge`` on 300 training inferred queries (the paper's), ``find_circuit`` and
  ``edge_attribution`` (EAP-IG, 5 steps) on the same queries;
- the same ``trace_bridge`` on a model that keeps all 52,464 rows of the vocabulary (what
  importing the checkpoint whole gives), the baseline for the analyses: grok_circuits keeps only
  the task's 2,207 rows (the padding and BPE rows can never be an answer);
- the peak memory of the process (resident set).

Goal (issue: the paper's released runs): loading plus ``trace_bridge`` under 15 s per checkpoint,
so a 30-checkpoint series is analysed in minutes.

Run: ``python benchmarks/paper_checkpoints.py`` (a few minutes on two CPU cores; writes about
0.5 GB under a temporary folder, removed at the end). Timings compare within one run only.
"""

import argparse
import json
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from grok_circuits import load_paper_data, load_run, trace_bridge  # noqa: E402
from grok_circuits.analysis import edge_attribution, find_circuit  # noqa: E402
from grok_circuits.analysis._inputs import as_pairs  # noqa: E402
from grok_circuits.hf import load_hf_model, read_tokenizer, token_rows  # noqa: E402
from grok_circuits.runs.series import EVAL_SIZE, load_series, model_tokens  # noqa: E402
from tests.paper_standin import write_composition_data, write_tokenizer  # noqa: E402

GPT2_BPE = 50257
DATASET = "composition.2000.200.7.2"


def timed(fn, *args, **kw):
    start = time.perf_counter()
    out = fn(*args, **kw)
    return out, time.perf_counter() - start


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def write_checkpoint(folder: Path, added: list[str], seed: int = 0) -> int:
    """A random-weight GPT-2 of the paper's shape, saved as the authors' runs are."""
    from transformers import GPT2Config, GPT2LMHeadModel

    ids = write_tokenizer(folder, added, base_size=GPT2_BPE)
    n_tokens = len(set(ids.values()))
    torch.manual_seed(seed)
    config = GPT2Config(n_layer=8, n_embd=768, n_head=12, vocab_size=n_tokens, n_positions=1024)
    model = GPT2LMHeadModel(config)
    model.resize_token_embeddings(n_tokens, pad_to_multiple_of=8, mean_resizing=False)
    model.config.vocab_size = model.get_input_embeddings().weight.shape[0]
    model.save_pretrained(folder)
    return model.config.vocab_size


def full_vocab_pairs(pairs, rows: torch.Tensor):
    """``pairs`` in the checkpoint's own token ids (for the model that keeps every row)."""
    import dataclasses

    return dataclasses.replace(
        pairs,
        clean=rows[pairs.clean],
        corrupt=rows[pairs.corrupt],
        answers=rows[pairs.answers],
        corrupt_answers=rows[pairs.corrupt_answers],
        lens={k: (rows[t], p) for k, (t, p) in pairs.lens.items()},
    )


def measure_ours(root: Path, n_examples: int) -> dict:
    """Our path alone, in this process: load the data and the checkpoint, trace, find the
    circuit, score the edges; the peak memory is this process's."""
    task, t_data = timed(load_paper_data, root / DATASET)
    run = load_series(root / "run", task, cache=False)
    model, t_load = timed(run.model, 0, "cpu")
    pairs = as_pairs(model, task, n_examples=n_examples)
    _, t_trace = timed(trace_bridge, model, pairs)
    peak_trace = peak_rss_gib()
    _, t_eval = timed(run.evaluate, steps=[0], progress=False)
    _, t_circuit = timed(find_circuit, model, pairs)
    _, t_eap = timed(edge_attribution, model, pairs, method="eap-ig")
    return dict(
        data=t_data,
        load=t_load,
        eval=t_eval,
        trace=t_trace,
        circuit=t_circuit,
        eap=t_eap,
        peak_trace=peak_trace,
        peak=peak_rss_gib(),
        n_train=len(task.train),
        n_pairs=len(pairs),
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--n-examples", type=int, default=300)
    parser.add_argument("--threads", type=int, default=None, help="torch threads (default: all)")
    parser.add_argument("--measure", type=Path, help=argparse.SUPPRESS)  # the child process
    args = parser.parse_args()
    if args.threads:
        torch.set_num_threads(args.threads)
    if args.measure:
        print(json.dumps(measure_ours(args.measure, args.n_examples)))
        return
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        data_dir, took = timed(
            write_composition_data,
            root / DATASET,
            n_entities=2000,
            n_relations=200,
            out_degree=20,
            phi=7.2,
            test_id_fraction=0.005,
            test_size=3000,
        )
        print(f"wrote the paper-scale dataset in {took:.1f} s")
        added = json.loads((data_dir / "vocab.json").read_text())
        folder = root / "run" / "checkpoint-0"
        rows_total = write_checkpoint(folder, added)
        size = sum(f.stat().st_size for f in folder.iterdir()) / 2**20
        print(
            f"checkpoint: 8 layers, d_model 768, 12 heads, {rows_total:,} vocabulary rows, "
            f"{size:.0f} MiB; torch threads: {torch.get_num_threads()}"
        )
        child = [sys.executable, __file__, "--measure", str(root), "--n-examples"]
        child += [str(args.n_examples)] + (["--threads", str(args.threads)] if args.threads else [])
        done = subprocess.run(child, capture_output=True, text=True, check=True)
        ours = json.loads(done.stdout.strip().splitlines()[-1])

        # The baselines, in this process: transformers' own loading, and the same trace on a
        # model that keeps every row of the checkpoint's vocabulary.
        from transformers import GPT2LMHeadModel

        _, t_hf = timed(GPT2LMHeadModel.from_pretrained, folder)
        task = load_paper_data(data_dir)
        tok = read_tokenizer(folder)
        by_id = {i: t for t, i in tok.ids.items()}
        full = load_hf_model(folder, [by_id.get(i) for i in range(rows_total)])
        compact = load_run(root / "run", data=task).model(0, "cpu")
        pairs = as_pairs(compact, task, n_examples=args.n_examples)
        rows = torch.tensor(token_rows(folder, model_tokens(task)))
        _, t_full = timed(trace_bridge, full, full_vocab_pairs(pairs, rows))

        per = ours["load"] + ours["trace"]
        print(f"\nload_paper_data: {ours['data']:.2f} s ({ours['n_train']:,} training items)")
        print(
            f"load a checkpoint: {ours['load']:.2f} s; transformers' from_pretrained "
            f"(memory-mapped, nothing converted): {t_hf:.2f} s; ratio {t_hf / ours['load']:.2f}x"
        )
        print(
            f"trace_bridge ({ours['n_pairs']} queries): {ours['trace']:.2f} s; with all "
            f"{rows_total:,} vocabulary rows: {t_full:.2f} s; ratio {t_full / ours['trace']:.2f}x"
        )
        print(
            f"metrics of one checkpoint (exact match, {EVAL_SIZE} examples of each of "
            f"{len(task.probe_names)} probes): {ours['eval']:.2f} s"
        )
        print(f"find_circuit: {ours['circuit']:.2f} s")
        print(f"edge_attribution (EAP-IG, 5 steps): {ours['eap']:.2f} s")
        verdict = "met" if per < 15 else "NOT met"
        print(f"loading + trace_bridge per checkpoint: {per:.2f} s (goal: under 15 s): {verdict}")
        print(f"a 30-checkpoint series, loading and tracing: about {30 * per / 60:.1f} min")
        print(
            f"peak memory of our path (resident): {ours['peak_trace']:.2f} GiB through "
            f"trace_bridge, {ours['peak']:.2f} GiB with find_circuit and EAP-IG"
        )


if __name__ == "__main__":
    main()
