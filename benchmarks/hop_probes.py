"""Where OOD composition breaks, hop by hop: the mixed-hop probes over a run's checkpoints.

    python benchmarks/hop_probes.py                       # the shipped composition run
    python benchmarks/hop_probes.py --run RUN_DIR         # any composition run (e.g. one kept
                                                          # by parameter_sharing.py --keep)

The paper's explanation of OOD failure (section 5.3; docs/science.md §7): OOD atomic facts never
serve as the *second* hop of a training inferred fact, so the upper layers never store them.
The composition task keeps its mixed paths as probes, never trained on: ``test_ood_hop1``
(first hop OOD, second ID) and ``test_ood_hop2`` (first hop ID, second OOD). A run trained
before they existed is evaluated after the fact, at each checkpoint
(:func:`grok_circuits.over_checkpoints` with :func:`grok_circuits.accuracy`).

It prints:

1. top-1 accuracy on every probe (whole splits) at every checkpoint; the baseline is
   ``test_id`` at the same checkpoint, and the ratio printed is hop-1-OOD / hop-2-OOD
   accuracy at the last one;
2. at the last checkpoint, the logit lens (:func:`grok_circuits.trace_reasoning` on
   ``--n-examples`` pairs per probe, the task's lens targets): MRR per layer of the bridge at
   the ``r1`` position and of the answer at the ``r2`` position, for ``test_id`` (the
   baseline), both mixed-hop probes and ``test_ood``.
"""

import argparse
from pathlib import Path

import torch

from grok_circuits import accuracy, load_run, make_pairs, over_checkpoints, trace_reasoning

ROOT = Path(__file__).resolve().parent.parent
PROBES = ("train_inferred", "test_id", "test_ood_hop1", "test_ood_hop2", "test_ood")
LENS = ("bridge@r1", "answer@r2")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--run", type=Path, default=ROOT / "data" / "runs" / "composition")
    parser.add_argument("--n-examples", type=int, default=300, help="pairs per probe (lens)")
    parser.add_argument("--threads", type=int, default=1)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = load_run(args.run)
    task = run.task
    print(run)
    print(
        f"n_loops {run.train_cfg.n_loops}; probe sizes: "
        + ", ".join(f"{p} {len(task.splits[p])}" for p in PROBES)
    )

    over = over_checkpoints(
        run, lambda m: {p: accuracy(m, task.splits[p]) for p in PROBES}, progress=False
    )
    print("\n1. accuracy per checkpoint (whole splits)")
    print(over.to_frame().round(3).to_string())
    last = over.results[-1]
    ratio = last["test_ood_hop1"] / last["test_ood_hop2"] if last["test_ood_hop2"] else float("inf")
    print(
        f"at step {over.steps[-1]}: hop-1-OOD {last['test_ood_hop1']:.3f}, hop-2-OOD "
        f"{last['test_ood_hop2']:.3f} (hop1 / hop2: {ratio:.1f}x), baseline test_id "
        f"{last['test_id']:.3f}"
    )

    model = run.model(over.steps[-1])
    print(f"\n2. logit lens at step {over.steps[-1]} ({args.n_examples} examples per probe)")
    rows = {}
    for p in PROBES[1:]:
        pairs = make_pairs(task, split=p, n_examples=args.n_examples, facts="all")
        trace = trace_reasoning(model, pairs)
        for name in LENS:
            rows[(p, name)] = trace.mrr(name)
        labels = trace.lens.layer_labels
    print(f"{'probe':<15}{'target':<11}" + "".join(f"{label:>13}" for label in labels))
    for (p, name), mrr in rows.items():
        print(f"{p:<15}{name:<11}" + "".join(f"{float(v):>13.3f}" for v in mrr))
    base = rows[("test_id", "answer@r2")][-1]
    for p in PROBES[2:]:
        b, a = rows[(p, "bridge@r1")], rows[(p, "answer@r2")]
        print(
            f"{p}: best bridge@r1 MRR {float(b.max()):.3f} (row {int(b.argmax())}); answer@r2 "
            f"MRR at the last row {float(a[-1]):.3f} = {float(a[-1] / base):.2f}x test_id's"
        )


if __name__ == "__main__":
    main()
