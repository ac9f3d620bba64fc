"""Edge circuits of the shipped composition run, memorizing against generalizing, and the cost
of edge attribution against node-level patching.

What it prints, on ``data/runs/composition`` (the tutorial model: 4 layers, 4 heads, 3 prompt
positions), with pairs pooled over the task's three swaps (h, r1, r2; ``--per-swap`` training
inferred queries each, seed 0):

1. the edge circuit at the generalizing checkpoint (EAP-IG, 5 steps; the top
   ``--share`` of the position-resolved edges, a share fixed in advance, pruned of dangling
   edges);
2. its faithfulness and completeness curves (corrupt ablation) and their areas, against
   ``--n-random`` random edge sets of each size, at the memorizing and at the generalizing
   checkpoint;
3. how the top edges' scores change from the memorizing to the generalizing checkpoint;
4. seconds for edge attribution (EAP-IG, 5 steps) of every edge, beside seconds for the
   node-level circuit (``find_circuit``, the paper's causal tracing of states, heads and MLPs)
   on the same pairs and checkpoint, and their ratio; best of ``--repeats``;
5. our EAP against TransformerLens' own ``tools.analysis.attribution_patch`` on the same model,
   checkpoint and pairs: seconds for each (best of ``--repeats``), and the agreement of the node
   scores (ours with ``gradient_at="corrupt"``, TransformerLens' convention, summed over the
   destinations each node feeds; and ours at the clean run, the default) -- the largest
   difference relative to the largest score, the correlation, the top nodes in common; then
   whether TransformerLens' edge granularity and ``faithfulness`` accept this model (the
   reason, where they refuse it). Where TransformerLens has no ``attribution_patch``, it says so
   and skips this part.

Run: ``python benchmarks/edge_circuits.py`` (a few minutes on two CPU cores; ``--threads``
sets torch's threads, default 2); ``--parity-only`` runs part 5 alone (under
``.venv-tl4/bin/python`` for TransformerLens 4.x).
"""

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from grok_circuits import (  # noqa: E402
    PromptPairs,
    compare_edges,
    edge_attribution,
    faithfulness,
    find_circuit,
    load_run,
    make_pairs,
)
from grok_circuits.analysis.edges.faithfulness import default_sizes  # noqa: E402
from grok_circuits.analysis.paper.stages import stage_step  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def best_time(repeats: int, fn):
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn()
        times.append(time.perf_counter() - start)
    return out, min(times)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=os.path.join(ROOT, "data", "runs", "composition"))
    parser.add_argument("--per-swap", type=int, default=100)
    parser.add_argument("--share", type=float, default=0.05)
    parser.add_argument("--n-random", type=int, default=20)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--out", default=None, help="folder for the figures (PNG)")
    parser.add_argument("--timing-only", action="store_true", help="only parts 4 and 5")
    parser.add_argument("--parity-only", action="store_true", help="only part 5")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = load_run(args.run)
    mem = stage_step(run, run.saturation_step)
    gen = stage_step(run, run.grok_step)
    sets = [
        make_pairs(run.task, swap, "train_inferred", n_examples=args.per_swap, seed=0)
        for swap in ("h", "r1", "r2")
    ]
    pairs = PromptPairs.concat(sets)
    print(
        f"run {os.path.relpath(args.run, ROOT)}: memorizing checkpoint {mem}, generalizing "
        f"{gen}; {len(pairs)} pairs (swaps h, r1, r2, {args.per_swap} each, seed 0); "
        f"torch threads {torch.get_num_threads()}"
    )

    if not (args.timing_only or args.parity_only):
        report(run, pairs, mem, gen, args)
    if not args.parity_only:
        timing(run, pairs, sets, gen, args.repeats)
    tl_parity(run, pairs, gen, args.repeats)


def report(run, pairs, mem, gen, args) -> None:
    """Parts 1 to 3 (and the figures)."""
    scores, faith = {}, {}
    for name, step in (("memorizing", mem), ("generalizing", gen)):
        model = run.model(step)
        scores[name] = edge_attribution(model, pairs, method="eap-ig", ig_steps=5)
        # the grid of edge counts the figures in benchmarks/README.md were measured on (the
        # default is MIB's fraction grid now); n_edges: the position-resolved edges that exist
        n_edges = int(scores[name].valid(positions=True).sum())
        faith[name] = faithfulness(
            model,
            pairs,
            scores[name],
            sizes=default_sizes(n_edges),
            ablation="corrupt",
            n_random=args.n_random,
            seed=0,
        )
    n_pos_edges = scores["generalizing"].graph.n_edges * pairs.width
    k = round(args.share * n_pos_edges)
    circuit = scores["generalizing"].circuit(top_k=k)
    print(
        f"\n== 1. edge circuit at the generalizing checkpoint (step {gen}), top {k} of "
        f"{n_pos_edges} position-resolved edges, pruned =="
    )
    print(circuit)
    mem_circuit = scores["memorizing"].circuit(top_k=k)
    print(
        f"memorizing checkpoint (step {mem}), same rule: {len(mem_circuit)} edges, components "
        f"{', '.join(map(str, mem_circuit.components))}"
    )
    shared = set(circuit.edges) & set(mem_circuit.edges)
    print(
        f"edges in both circuits: {len(shared)}; only generalizing: "
        f"{len(circuit) - len(shared)}; only memorizing: {len(mem_circuit) - len(shared)}"
    )

    print("\n== 2. faithfulness (corrupt ablation) against random edge sets, seed 0 ==")
    for name, f in faith.items():
        a = f.auc
        print(
            f"{name:>12}: AUC faithfulness {a['faithfulness']:.3f} vs random "
            f"{a['random faithfulness']:.3f} +- {a['random faithfulness std']:.3f} "
            f"(P(random >= circuit) {a['P(random >= faithfulness)']:.3f}); completeness "
            f"{a['completeness']:.3f} vs random {a['random completeness']:.3f} +- "
            f"{a['random completeness std']:.3f} (P {a['P(random >= completeness)']:.3f})"
        )
    print(faith["generalizing"].to_frame().round(3).to_string())

    print("\n== 3. top edges, memorizing -> generalizing ==")
    change = compare_edges(scores["memorizing"], scores["generalizing"], top_k=10)
    print(change.to_frame().round(3).to_string())

    if args.out:
        os.makedirs(args.out, exist_ok=True)
        circuit.plot(step=gen).savefig(os.path.join(args.out, "edge_circuit.png"), dpi=120)
        from grok_circuits.viz import plot_faithfulness

        plot_faithfulness(faith).savefig(os.path.join(args.out, "faithfulness.png"), dpi=120)
        change.plot().savefig(os.path.join(args.out, "edge_change.png"), dpi=120)
        print(f"figures in {args.out}")


def timing(run, pairs, sets, gen, repeats: int) -> None:
    """Part 4: seconds for edge attribution and for the node-level circuit, same pairs."""
    print("\n== 4. cost: edge attribution vs node-level patching, same pairs, step", gen, "==")
    model = run.model(gen)
    scores, t_edges = best_time(
        repeats, lambda: edge_attribution(model, pairs, method="eap-ig", ig_steps=5)
    )
    _, t_nodes = best_time(repeats, lambda: find_circuit(model, sets, method="patching"))
    print(
        f"EAP-IG (5 steps), {scores.graph.n_edges} edges x {pairs.width} positions: "
        f"{t_edges:.2f} s; find_circuit (patching: resid_pre, heads, MLPs): {t_nodes:.2f} s; "
        f"ratio node/edge {t_nodes / t_edges:.2f}x"
    )


def _tl_node_scores(tools, model, pairs) -> tuple[dict, int]:
    """TransformerLens' node scores averaged over the pairs (one pair a call: its metric reads
    that pair's answers), and how many calls it took."""
    config = tools.EdgeAttributionConfig(granularity="node")
    total: dict = {}
    for i in range(len(pairs)):

        def metric(logits, i=i):
            a = logits[0, pairs.answer_pos[i]]
            return a[pairs.answers[i]] - a[pairs.corrupt_answers[i]]

        r = tools.attribution_patch(
            model, pairs.clean[i : i + 1], pairs.corrupt[i : i + 1], metric, config
        )
        for node, v in r.node_scores.items():
            total[node] = total.get(node, 0.0) + float(v) / len(pairs)
    return total, len(pairs)


def _source(graph, node) -> int:
    """Our source index of one of TransformerLens' nodes."""
    if node.kind == "embed":
        return 0
    if node.kind == "attn_head_out":
        return graph.head_source(node.layer, node.head)
    return graph.mlp_source(node.layer)


def _agreement(mine: torch.Tensor, ref: torch.Tensor, top: int = 10) -> str:
    scale = float(ref.abs().max())
    diff = float((mine - ref).abs().max())
    corr = float(torch.corrcoef(torch.stack([mine, ref]))[0, 1])
    a = set(mine.abs().topk(top).indices.tolist())
    b = set(ref.abs().topk(top).indices.tolist())
    return (
        f"largest difference {diff:.2e} (relative to the largest score {diff / scale:.2e}), "
        f"correlation {corr:.6f}, top {top} nodes by |score| in common {len(a & b)}"
    )


def _refusal(call) -> str:
    try:
        call()
    except (NotImplementedError, ValueError, TypeError) as err:
        return f"refused: {type(err).__name__}: {str(err).split(chr(10))[0]}"
    return "accepted"


def tl_parity(run, pairs, gen, repeats: int) -> None:
    """Part 5: our EAP against TransformerLens' attribution_patch, same model and pairs."""
    import importlib.metadata

    version = importlib.metadata.version("transformer_lens")
    print(f"\n== 5. our EAP vs TransformerLens {version}'s attribution_patch, step {gen} ==")
    try:
        import transformer_lens.tools.analysis as tools
    except ImportError:
        tools = None
    if tools is None or not hasattr(tools, "EdgeAttributionConfig"):
        print(
            f"TransformerLens {version} has no tools.analysis.attribution_patch with "
            "EdgeAttributionConfig: TransformerLens' tool is unavailable, part 5 skipped"
        )
        return
    model = run.model(gen)
    ours, t_ours = best_time(
        repeats, lambda: edge_attribution(model, pairs, method="eap", gradient_at="corrupt")
    )
    clean = edge_attribution(model, pairs, method="eap")
    (theirs, calls), t_theirs = best_time(repeats, lambda: _tl_node_scores(tools, model, pairs))
    g = ours.graph
    nodes = list(theirs)
    ref = torch.tensor([theirs[n] for n in nodes], dtype=torch.float32)

    def node_sums(scores):
        node = scores.raw.sum(1)  # [source, pos]: a node is the sum of the edges it feeds
        return torch.tensor([float(node[_source(g, n), n.position]) for n in nodes])

    print(
        f"{type(model).__name__}, {len(pairs)} pairs: ours (edge_attribution, method='eap', "
        f"gradient_at='corrupt', batches of 256; {g.n_edges} edges x {pairs.width} positions) "
        f"{t_ours:.3f} s; TransformerLens (attribution_patch, granularity='node', {calls} calls "
        f"of one pair) {t_theirs:.3f} s: ratio {t_theirs / t_ours:.1f}x; best of {repeats}"
    )
    print(
        f"nodes: TransformerLens {len(nodes)}, ours {g.n_sources} sources x {pairs.width} "
        f"positions = {g.n_sources * pairs.width}"
    )
    print(f"node scores, ours at the corrupt run: {_agreement(node_sums(ours), ref)}")
    print(f"node scores, ours at the clean run (default): {_agreement(node_sums(clean), ref)}")
    one = (pairs.clean[:1], pairs.corrupt[:1])

    def metric(logits):
        a = logits[0, pairs.answer_pos[0]]
        return a[pairs.answers[0]] - a[pairs.corrupt_answers[0]]

    print(
        "TransformerLens edge granularity on this model: "
        + _refusal(
            lambda: tools.attribution_patch(
                model, *one, metric, tools.EdgeAttributionConfig(granularity="edge")
            )
        )
    )
    if hasattr(tools, "faithfulness"):
        print(
            "TransformerLens faithfulness on this model: "
            + _refusal(lambda: tools.faithfulness(model, *one, metric, []))
        )
    else:
        print(f"TransformerLens {version} has no tools.analysis.faithfulness")


if __name__ == "__main__":
    main()
