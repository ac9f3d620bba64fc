"""Circuit reuse at component level and at edge level, on the shipped mixed runs.

On the shipped mixed run (4 layers x 4 heads + 4 MLPs = 20 components) the composition circuit
holds 8 components, and ablating any 8 random components destroys composition too: the
component-level cross-ablation cannot tell reuse from damage at that scale. This prints, for
``data/runs/mixed`` and ``data/runs/mixed_wide`` (4 layers x 16 heads of 8 dimensions + 4 MLPs =
68 components, the same mixed task and preset otherwise), at each run's last checkpoint:

1. ``circuit_reuse(model, task)``: component circuits (the paper's causal tracing, default
   threshold, or ``--top-k``), their overlap against size-matched random sets, and accuracy
   after mean-ablating each circuit against ``--n-random-ablations`` random component sets
   of its size (as many heads and as many MLPs);
2. ``edge_reuse(model, subtasks, names)``: edge circuits (EAP-IG, 5 steps, top 5% of the
   (source, destination) edges), their overlap against random edge sets, and the share of each
   task's logit difference kept after knocking out each circuit's edges (corrupt ablation)
   against random edge sets of its size.

Seeds: 0 everywhere (pairs, random sets). Run: ``python benchmarks/circuit_reuse_edges.py``
(about ten minutes on two CPU cores).
"""

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import torch  # noqa: E402

from grok_circuits import circuit_reuse, load_run  # noqa: E402
from grok_circuits.analysis.edges.reuse import edge_reuse  # noqa: E402
from grok_circuits.tasks import subtasks  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", nargs="+", default=["mixed", "mixed_wide"])
    parser.add_argument("--n-examples", type=int, default=300, help="pairs per swap")
    parser.add_argument("--n-random-ablations", type=int, default=20)
    parser.add_argument(
        "--levels", nargs="+", default=["components", "edges"], choices=["components", "edges"]
    )
    parser.add_argument(
        "--top-k",
        type=int,
        default=None,
        help="circuit size (components or edges); default: the level's own rule",
    )
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    for name in args.runs:
        run = load_run(os.path.join(ROOT, "data", "runs", name))
        step = run.steps[-1]
        model = run.model(step)
        cfg = model.cfg
        n_comp = cfg.n_layers * (cfg.n_heads + 1)
        print(
            f"\n##### {name}: step {step}, {cfg.n_layers} layers x {cfg.n_heads} heads "
            f"(d_head {cfg.d_head}) + MLPs = {n_comp} components"
        )
        for level in args.levels:
            start = time.perf_counter()
            if level == "components":
                report = circuit_reuse(
                    model,
                    run.task,
                    top_k=args.top_k,
                    n_examples=args.n_examples,
                    n_random_ablations=args.n_random_ablations,
                    seed=0,
                )
            else:  # the same sub-tasks and pairs, compared edge by edge
                views = subtasks(run.task)
                report = edge_reuse(
                    model,
                    list(views.values()),
                    tuple(views),
                    top_k=args.top_k,
                    n_random_ablations=args.n_random_ablations,
                    seed=0,
                    pair_kw=dict(split="train_inferred", n_examples=args.n_examples, seed=0),
                )
            print(f"--- level={level} ({time.perf_counter() - start:.0f} s)")
            print(report)


if __name__ == "__main__":
    main()
