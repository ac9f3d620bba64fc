"""Shared vs unshared layers on the tutorial composition task: does sharing let OOD compose?

    python benchmarks/parameter_sharing.py --steps 8000 --seeds 0 1 2 --jobs 6 --device cuda
    python benchmarks/parameter_sharing.py --from-csv data/parameter_sharing.csv   # print only

The paper's remedy for OOD composition (Wang et al. 2024, appendix E.2) shares the parameters
of the lower and upper half of the network, "in the spirit of the Universal Transformer": 4
layers run twice. Here both models have the same depth (``--n-layers``, default 4, the tutorial
model's): the standard one has ``n_layers`` independent blocks, the shared one
``n_layers / 2`` unique blocks run twice (``TrainConfig(n_loops=2)``), so both do the same
computation per step. Everything else is the tutorial composition recipe (lr 2e-3, weight decay
0.5, 200 warm-up steps, batch 512), without early stopping, on the tutorial graph (100
entities, 20 relations, out-degree 10) at the largest phi its ID pool allows. The seed sets the
initial weights and the batch order; the task is the same for every seed.

It prints, for each model, accuracy over steps on ``test_ood`` (both hops OOD), on the two
mixed-hop probes ``test_ood_hop1`` (first hop OOD) and ``test_ood_hop2`` (second hop OOD), and
on ``test_id``: the mean over seeds and every seed. The baseline is the unshared model in the
same run; the ratio printed is shared / unshared OOD accuracy at the last common step.

Trials run in parallel processes (``--jobs``, spawned; one torch thread each). Each trial's
``metrics.json`` is read every few seconds and the CSV (``--csv``) rewritten with every row so
far, so a run cut short still leaves its curves. ``--keep DIR`` keeps the run folders.
"""

import argparse
import concurrent.futures as cf
import csv
import math
import multiprocessing as mp
import os
import tempfile
import time
from pathlib import Path

#: The probes the CSV records, in its column order.
PROBES = (
    "train_inferred",
    "test_id",
    "test_ood",
    "test_ood_hop1",
    "test_ood_hop2",
    "id_atomic",
    "ood_atomic",
)
MODELS = {"standard": 1, "shared": 2}  # model name -> n_loops
FIELDS = ["model", "n_loops", "n_layers", "seed", "phi", "step", "time"] + [
    f"{p}_acc" for p in PROBES
]


def max_phi(task) -> float:
    """The largest phi (two decimals, rounded down) the task's ID pool holds after test_id."""
    c = task.counts
    return math.floor((c["id_pool"] - c["test_id"]) / c["atomic_id"] * 100) / 100


def the_task(phi: float | None):
    from grok_circuits import make_task

    task = make_task("composition", preset="tutorial")
    return make_task("composition", preset="tutorial", phi=phi or max_phi(task))


def trial(model: str, seed: int, args: dict, out: str) -> str:
    """Train one model (in its own process) into ``out``."""
    import dataclasses

    import torch

    from grok_circuits import model_config, train
    from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED

    torch.set_num_threads(1)
    task = the_task(args["phi"])
    cfg = dataclasses.replace(
        TUTORIAL_AS_RECORDED,  # the recipe its shipped results were measured with
        max_steps=args["steps"],
        stop_id_acc=None,
        eval_every=args["eval_every"],
        dense_until=0,
        checkpoints_per_decade=3,
        n_loops=MODELS[model],
        seed=seed,
        device=args["device"],
        threads=1,
    )
    mc = model_config(task, cfg.model_size, n_layers=args["n_layers"])
    train(task, cfg, out=out, model_cfg=mc, progress=False)
    return out


def read_rows(folders: dict[tuple[str, int], Path], n_layers: int, phi: float) -> list[dict]:
    """Every evaluation so far of every trial, as CSV rows."""
    import json

    rows = []
    for (model, seed), folder in folders.items():
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        for m in metrics:
            row = {"model": model, "n_loops": MODELS[model], "n_layers": n_layers, "seed": seed}
            row.update({"phi": phi, "step": m["step"], "time": m["time"]})
            row.update({f"{p}_acc": m[f"{p}_acc"] for p in PROBES})
            rows.append(row)
    return rows


def write_csv(rows: list[dict], path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_suffix(".tmp")
    with open(tmp, "w", newline="") as f:
        w = csv.DictWriter(f, fieldnames=FIELDS)
        w.writeheader()
        w.writerows(rows)
    os.replace(tmp, path)


def load_csv(path: Path) -> list[dict]:
    with open(path) as f:
        return [
            {k: (v if k == "model" else float(v)) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def report(rows: list[dict], every: int) -> None:
    """Accuracy over steps per model (mean over seeds, then each seed) and the ratio."""
    by = {}
    for r in rows:
        by.setdefault((r["model"], int(r["step"])), []).append(r)
    models = [m for m in MODELS if any(k[0] == m for k in by)]
    seeds = sorted({int(r["seed"]) for r in rows})
    common = sorted(
        s for s in {k[1] for k in by} if all(len(by.get((m, s), [])) == len(seeds) for m in models)
    )
    if not common:
        print("no step evaluated for every model and seed yet")
        return
    shown = [s for s in common if s % every == 0 or s == common[-1]]
    meta = rows[0]
    print(
        f"tutorial composition task, phi {meta['phi']}, depth {int(meta['n_layers'])}; seeds "
        f"{seeds}; standard = {int(meta['n_layers'])} blocks, shared = "
        f"{int(meta['n_layers']) // 2} blocks run twice"
    )
    for probe in ("test_ood", "test_ood_hop1", "test_ood_hop2", "test_id"):
        print(f"\n{probe} accuracy (mean over seeds [each seed])")
        print("step    " + "".join(f"{m:>34}" for m in models))
        for s in shown:
            cells = []
            for m in models:
                accs = [r[f"{probe}_acc"] for r in sorted(by[(m, s)], key=lambda r: r["seed"])]
                each = " ".join(f"{a:.2f}" for a in accs)
                cells.append(f"{sum(accs) / len(accs):.3f} [{each}]")
            print(f"{s:<8}" + "".join(f"{c:>34}" for c in cells))
    last = common[-1]
    print(f"\nat step {last} (last step every trial reached):")
    mean = {
        (m, p): sum(r[f"{p}_acc"] for r in by[(m, last)]) / len(seeds)
        for m in models
        for p in PROBES
    }
    for p in ("test_ood", "test_ood_hop1", "test_ood_hop2", "test_id"):
        line = "  ".join(f"{m} {mean[(m, p)]:.3f}" for m in models)
        ratio = ""
        if "standard" in models and "shared" in models:
            base = mean[("standard", p)]
            ratio = f"  shared / standard: {mean[('shared', p)] / base:.2f}x" if base else ""
        print(f"  {p:<14} {line}{ratio}")
    best = {
        m: max(r["test_ood_acc"] for r in rows if r["model"] == m and r["step"] <= last)
        for m in models
    }
    print(
        "  best test_ood at any evaluation (any seed): "
        + ", ".join(f"{m} {best[m]:.3f}" for m in models)
    )
    for m in models:
        grok = []
        for seed in seeds:
            steps = [
                int(r["step"])
                for r in rows
                if r["model"] == m and int(r["seed"]) == seed and r["test_id_acc"] >= 0.95
            ]
            grok.append(min(steps) if steps else None)
        print(f"  first step with ID >= 0.95, {m}: {grok}")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=8000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--n-layers", type=int, default=4, help="depth of both models")
    parser.add_argument("--phi", type=float, help="default: the largest the ID pool allows")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--csv", type=Path, default=Path("parameter_sharing.csv"))
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    parser.add_argument("--from-csv", type=Path, help="print the report of a CSV and exit")
    parser.add_argument("--print-every", type=int, default=1000, help="report rows every N steps")
    args = parser.parse_args()
    if args.from_csv:
        report(load_csv(args.from_csv), args.print_every)
        return
    if args.n_layers % 2:
        parser.error(
            f"--n-layers must be even (the shared model runs half of it twice), got {args.n_layers}"
        )
    phi = args.phi or max_phi(the_task(None))
    opts = {
        "phi": phi,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "device": args.device,
        "n_layers": args.n_layers,
    }
    root = args.keep or Path(tempfile.mkdtemp(prefix="parameter_sharing-"))
    folders = {(m, s): root / f"{m}_seed{s}" for s in args.seeds for m in MODELS}
    print(f"{len(folders)} trials, {args.jobs} at a time, device {args.device}; runs in {root}")
    t0 = time.perf_counter()
    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = {
            pool.submit(trial, m, s, opts, str(folder)): (m, s)
            for (m, s), folder in folders.items()
        }
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=10)
            for f in done:
                f.result()  # a failed trial stops the benchmark with its error
                print(f"done: {futures[f]} after {time.perf_counter() - t0:.0f} s", flush=True)
            write_csv(read_rows(folders, args.n_layers, phi), args.csv)
    print(f"all trials done in {time.perf_counter() - t0:.0f} s; CSV: {args.csv}\n")
    report(read_rows(folders, args.n_layers, phi), args.print_every)


if __name__ == "__main__":
    main()
