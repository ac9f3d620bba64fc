"""Where does the shipped composition model keep the bridge entity, as a causal variable?

    python benchmarks/das_bridge.py --threads 1                 # memorizing and last checkpoint
    python benchmarks/das_bridge.py --threads 1 --steps all     # every checkpoint (the onset)
    python benchmarks/das_bridge.py --k 1 4 16 --layers 1
    python benchmarks/das_bridge.py --steps all --no-random-init --csv data/das_bridge.csv

Distributed alignment search (``grok_circuits.analysis.das``) of the bridge entity at the ``r1``
position, ``resid_pre`` of each layer, on the shipped run ``data/runs/composition``: a ``k``-dim
subspace is trained on half of ``--pairs`` bridge pairs (``bridge_pairs``: a base query and a
source query with another bridge; the expected answer is the source's bridge followed by the
base's ``r2``) and its interchange-intervention accuracy (IIA) read on the other half. Beside it
the controls: the whole vector (activation patching, the ceiling), the mean of 10 random
subspaces of the same ``k``, and DAS trained the same way on a randomly initialised model of the
same shape (and, with ``--arbitrary``, DAS trained towards arbitrary labels). For the onset,
the logit-lens MRR of the bridge at ``r1`` per layer (``trace_bridge``, 300 pairs) is printed
too. With ``--csv PATH`` every printed row (step, k, layer, the IIAs, the lens MRR and the run's
ID accuracy at that step) is also written to a CSV; ``data/das_bridge.csv``, which tutorial 9
plots, is the last command above.

Under TransformerLens 4.x (``.venv-tl4/bin/python benchmarks/das_bridge.py``) it also evaluates
each learned basis with TransformerLens' own ``tools.analysis.interchange`` on all the pairs
and prints both IIAs and the largest difference of the intervened logits ("same numbers on the
same subspace").
"""

import argparse
import time

import pandas as pd
import torch

from grok_circuits import load_run
from grok_circuits.analysis import das, interchange_accuracy, trace_bridge
from grok_circuits.analysis.patching.interchange import hook_name, interchange_logits
from grok_circuits.tasks.composition import bridge_pairs


def transformer_lens_parity(model, pairs, basis, layer: int) -> str:
    """Our IIA and TransformerLens 4.x's on the same basis and pairs, and the largest logit
    difference; empty where TransformerLens has no ``tools.analysis.interchange`` (3.x)."""
    try:
        from transformer_lens.tools.analysis import interchange as tl
    except ImportError:
        return ""
    at = torch.full((len(pairs),), pairs.positions["r1"])
    name = hook_name(layer)

    def task_logits(tokens):
        return model(tokens)[:, -1]

    source = tl.collect_activations(model, name, pairs.corrupt, task_logits, positions=at)
    theirs = tl.intervened_logits(
        model, name, tl.SubspaceInterchange(basis), pairs.clean, source, task_logits, positions=at
    )
    ours = interchange_logits(model, pairs, basis, layer=layer, position="r1")
    tl_iia = float((theirs.argmax(-1) == pairs.corrupt_answers).float().mean())
    our_iia = interchange_accuracy(model, pairs, basis, layer=layer, position="r1")
    diff = float((ours - theirs).abs().max())
    return (
        f"layer {layer}: IIA ours {our_iia:.4f}, TransformerLens {tl_iia:.4f}, "
        f"max |logit difference| {diff:.1e}"
    )


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--run", default="data/runs/composition")
    p.add_argument(
        "--steps",
        nargs="+",
        default=["memorizing", "last"],
        help="checkpoint steps, 'memorizing', 'generalizing', 'last' or 'all'",
    )
    p.add_argument("--k", type=int, nargs="+", default=[32])
    p.add_argument("--layers", type=int, nargs="+", default=None)
    p.add_argument("--pairs", type=int, default=2000, help="bridge pairs (half train DAS)")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--batch-size", type=int, default=64)
    p.add_argument("--lr", type=float, default=1e-2)
    p.add_argument("--no-random-init", action="store_true", help="skip the untrained control")
    p.add_argument("--arbitrary", action="store_true", help="add the arbitrary-label control")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--threads", type=int, default=1, help="torch intra-op threads (default 1)")
    p.add_argument("--csv", default=None, help="also write every row to this CSV")
    args = p.parse_args()
    torch.set_num_threads(args.threads)

    run = load_run(args.run)
    named = {
        "memorizing": run.nearest_step(run.saturation_step),
        "generalizing": run.nearest_step(run.grok_step),
        "last": run.last_step,
    }
    steps = (
        run.steps
        if args.steps == ["all"]
        else [named[s] if s in named else int(s) for s in args.steps]
    )
    print(
        f"{run}\nmemorizing step {run.saturation_step} (checkpoint {named['memorizing']}), "
        f"generalizing step {run.grok_step}; {args.pairs} bridge pairs, epochs {args.epochs}, "
        f"batch {args.batch_size}, lr {args.lr}, seed {args.seed}, threads "
        f"{torch.get_num_threads()}\n"
    )
    id_key = f"{run.key_probes['id']}_acc"
    id_acc = {int(m["step"]): float(m[id_key]) for m in run.metrics if id_key in m}
    frames = []
    for step in sorted(dict.fromkeys(steps)):
        model = run.model(step, device="cpu").eval()
        lens = trace_bridge(model, run.task).bridge_mrr
        for k in args.k:
            t0 = time.perf_counter()
            r = das(
                model,
                run.task,
                layers=args.layers,
                k=k,
                n_examples=args.pairs,
                epochs=args.epochs,
                batch_size=args.batch_size,
                lr=args.lr,
                random_init=not args.no_random_init,
                arbitrary=args.arbitrary,
                seed=args.seed,
            )
            frame = r.to_frame()
            frame.insert(0, "step", step)
            frame["lens_mrr"] = [float(lens[layer]) for layer in r.layers]
            frame["id_acc"] = id_acc.get(step, float("nan"))
            frames.append(frame)
            print(
                f"step {step}, k={k}: {r.n_train} train / {r.n_test} held-out pairs, base "
                f"accuracy {r.base_accuracy:.3f}, {time.perf_counter() - t0:.0f} s"
            )
            cols = [
                "step",
                "layer",
                "iia_train",
                "iia_test",
                "iia_random",
                "iia_full",
                "iia_random_init",
                "lens_mrr",
            ] + ["iia_arbitrary"] * args.arbitrary
            print(frame[cols].round(3).to_string(index=False), "\n", flush=True)
            pairs = bridge_pairs(run.task, n_examples=args.pairs, seed=args.seed)
            for i, layer in enumerate(r.layers):
                line = transformer_lens_parity(model, pairs, r.bases[i], layer)
                if line:
                    print(line, flush=True)
    if args.csv:
        out = pd.concat(frames, ignore_index=True)
        out.to_csv(args.csv, index=False, float_format="%.6g")
        print(f"{len(out)} rows written to {args.csv}")


if __name__ == "__main__":
    main()
