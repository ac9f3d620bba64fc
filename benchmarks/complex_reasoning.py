"""Complex reasoning at tutorial scale: accuracy on the hard test set and on the OOD values over
training, against chance and the rule that does not chain (section 5 and appendix F of the
paper).

    python benchmarks/complex_reasoning.py --device cuda --out data/complex_reasoning.csv
    python benchmarks/complex_reasoning.py --seeds 0 --max-steps 200      # a try

Each seed generates ``make_task("complex", preset="tutorial", seed=SEED)`` and trains the task's
tutorial preset (``train_config("complex", "tutorial")``, weights seeded the same) until it
stops by its own rule (ID >= 0.95 held for 5 evaluations, hard >= 0.9 on average over them),
``--max-steps``, or ``--time-budget`` seconds. The CSV holds every evaluation (``seed``, ``step``
and the accuracy of each probe), rewritten after every ``--chunk`` steps so that a cut run leaves
what it had.

The baselines, computed on the same task by :func:`grok_circuits.tasks.complex_baselines` and
printed next to the model: chance (1/3 on the balanced hard set, 1/n_values on the OOD values), the
win-rate rule that does not chain, and, for the OOD values, the middle of the interval chaining
pins each to. The paper's 150 hard queries: GPT-4-Turbo with retrieval 33.3%, Gemini-1.5-Pro
with retrieval 37.3%, chance 33.3%.
"""

import argparse
import concurrent.futures as cf
import contextlib
import csv
import dataclasses
import io
import multiprocessing as mp
import os
import shutil
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from phi_law import train_in_chunks  # noqa: E402

PROBES = (
    "train_inferred",
    "train_id_ood",
    "test_id",
    "test_ood",
    "test_hard",
    "id_atomic",
    "ood_atomic",
)
COLUMNS = ["seed", "step", *(f"{p}_acc" for p in PROBES)]


def write_rows(path: str, rows: list[dict]) -> None:
    tmp = f"{path}.tmp"
    with open(tmp, "w", newline="") as f:
        writer = csv.DictWriter(f, COLUMNS)
        writer.writeheader()
        writer.writerows(rows)
    os.replace(tmp, path)


def one_seed(spec: dict) -> dict:
    """Train one seed; its metrics go to ``spec["part"]`` after every chunk."""
    import torch

    from grok_circuits import make_task, train_config
    from grok_circuits.tasks import complex_baselines

    torch.set_num_threads(1)
    t0 = time.time()
    task = make_task("complex", preset="tutorial", seed=spec["seed"])
    cfg = dataclasses.replace(
        train_config("complex", "tutorial"),
        max_steps=spec["max_steps"],
        seed=spec["seed"],
        device=spec["device"],
        threads=1,
        dense_until=0,
        checkpoints_per_decade=1,
    )

    def save(run):
        rows = [
            {
                "seed": spec["seed"],
                "step": m["step"],
                **{f"{p}_acc": round(m[f"{p}_acc"], 4) for p in PROBES},
            }
            for m in run.metrics
        ]
        write_rows(spec["part"], rows)

    tmp = tempfile.mkdtemp(prefix="complex_")
    try:
        with contextlib.redirect_stdout(io.StringIO()):
            run, status = train_in_chunks(
                task,
                cfg,
                Path(tmp) / "run",
                chunk=spec["chunk"],
                deadline=spec["deadline"],
                on_chunk=save,
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    last = run.metrics[-1]
    best_hard = max(m["test_hard_acc"] for m in run.metrics)
    return {
        "seed": spec["seed"],
        "status": status,
        "last_step": run.last_step,
        "seconds": round(time.time() - t0, 1),
        "final": {p: last[f"{p}_acc"] for p in PROBES},
        "best_hard": best_hard,
        "baselines": complex_baselines(task),
        "stats": {
            k: task.stats()[k]
            for k in ("atomic_id", "train_id_id", "train_id_ood", "test_hard", "hard_pool")
        },
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="complex_reasoning.csv")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--max-steps", type=int, default=6000)
    parser.add_argument("--chunk", type=int, default=500)
    parser.add_argument("--time-budget", type=float, default=1e9)
    parser.add_argument("--device", default="cpu")
    args = parser.parse_args()
    deadline = time.time() + args.time_budget
    parts = {s: f"{args.out}.seed{s}" for s in args.seeds}
    specs = [
        dict(
            seed=s,
            part=parts[s],
            max_steps=args.max_steps,
            chunk=args.chunk,
            deadline=deadline,
            device=args.device,
        )
        for s in args.seeds
    ]
    results = []
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(len(specs), mp_context=ctx) as pool:
        for fut in cf.as_completed([pool.submit(one_seed, s) for s in specs]):
            results.append(fut.result())
            rows = []
            for s in args.seeds:  # the finished seeds and the partial ones, merged
                if os.path.exists(parts[s]):
                    with open(parts[s], newline="") as f:
                        rows += list(csv.DictReader(f))
            write_rows(args.out, rows)
    for s in args.seeds:
        if os.path.exists(parts[s]):
            os.remove(parts[s])
    for r in sorted(results, key=lambda r: r["seed"]):
        b, fin = r["baselines"], r["final"]
        print(
            f"seed {r['seed']}: {r['stats']}; {r['status']} at step {r['last_step']} "
            f"({r['seconds']} s on {args.device})\n"
            f"  hard test (150 queries): model {fin['test_hard']:.3f} (best {r['best_hard']:.3f})"
            f" | chance {b['hard_chance']:.3f} | win-rate rule (no chaining) "
            f"{b['hard_win_rate']:.3f} | chaining {b['hard_chained']:.3f}"
            f" | ratio model / win-rate {fin['test_hard'] / b['hard_win_rate']:.2f}x\n"
            f"  OOD values: model {fin['ood_atomic']:.3f} | chance {b['ood_atomic_chance']:.3f}"
            f" | middle of the chained interval {b['ood_atomic_bracket']:.3f}\n"
            f"  train {fin['train_inferred']:.3f} (ID x OOD {fin['train_id_ood']:.3f}), "
            f"ID {fin['test_id']:.3f}, all OOD pairs {fin['test_ood']:.3f}, "
            f"ID atomic {fin['id_atomic']:.3f}"
        )


if __name__ == "__main__":
    sys.exit(main())
