"""MIB's CPR and CMD of the shipped composition run's edge circuits, per ablation, ID against
OOD, at the memorizing and the generalizing checkpoint and over every checkpoint.

What it prints, on ``data/runs/composition`` (4 layers, 4 heads, 3 prompt positions), with
pairs pooled over the task's three swaps (h, r1, r2), seed 0:

- ID pairs: ``--per-swap`` queries of ``test_id`` per swap (held-out queries over ID facts);
  OOD pairs: ``test_ood`` (27 queries per swap; their first fact is OOD). The corrupt prompt
  of each pair is built from ID facts (``facts="id"``);
- at each checkpoint, the circuit is the ranking of the EAP scores computed at that checkpoint
  on the set's own pairs (:func:`~grok_circuits.analysis.faithfulness_over_checkpoints`), and
  its faithfulness is measured on MIB's edge-fraction grid (0.1% to 100% of the
  position-resolved edges) against ``--n-random`` random edge sets per size;

1. CPR and CMD per ablation (corrupt, zero, mean, mean-positional, resample) at the memorizing
   checkpoint (the first at or after ``run.memorization_step``) and at the generalizing one (the
   first at or after ``run.grok_step``), for the ID and the OOD pairs, with the random sets' CPR
   and the full and empty graphs' mean logit difference (the normalisation's two ends);
2. CPR and CMD at every checkpoint under ``--over`` ablations (default corrupt and resample),
   beside the run's train, ID and OOD accuracy.

Every row goes to ``--csv`` (default ``data/mib_over_checkpoints.csv``); the faithfulness
surfaces of part 2 (per ablation, set, checkpoint and edge fraction: the circuit's f and the
random sets' mean and std) to ``--surface-csv`` (default ``data/mib_surface.csv``, which
tutorial 9 draws); ``--out FIGDIR`` saves the surface figure of each ablation of part 2.

Run: ``python benchmarks/mib_over_checkpoints.py`` (about five minutes on one thread of a busy
two-core machine).
"""

import argparse
import os
import time

os.environ.setdefault("TQDM_DISABLE", "1")

import pandas as pd  # noqa: E402
import torch  # noqa: E402

from grok_circuits import PromptPairs, load_run, make_pairs  # noqa: E402
from grok_circuits.analysis import (  # noqa: E402
    EDGE_ABLATIONS,
    faithfulness_over_checkpoints,
)
from grok_circuits.analysis.paper.stages import stage_step  # noqa: E402

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
SWAPS = ("h", "r1", "r2")
COLUMNS = ["cpr", "random cpr", "cmd", "random cmd", "full metric", "empty metric"]


def pooled(task, split: str, per_swap: int | None) -> PromptPairs:
    return PromptPairs.concat(
        [make_pairs(task, s, split, n_examples=per_swap, seed=0) for s in SWAPS]
    )


def surface_rows(over) -> pd.DataFrame:
    """One row per set, checkpoint and edge fraction: the circuit's faithfulness there and the
    random sets' mean and std (the surface ``over.plot()`` draws, and its baseline)."""
    rows = []
    for name, results in over.results.items():
        for step, f in zip(over.steps, results):
            frame = f.to_frame().reset_index()
            rows.append(
                pd.DataFrame(
                    {
                        "ablation": over.ablation,
                        "set": name,
                        "step": step,
                        "edges": frame["edges"],
                        "fraction": frame["fraction"],
                        "faithfulness": frame["faithfulness"],
                        "random faithfulness": frame["random faithfulness"],
                        "random faithfulness std": frame["random faithfulness std"],
                    }
                )
            )
    return pd.concat(rows, ignore_index=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--run", default=os.path.join(ROOT, "data", "runs", "composition"))
    parser.add_argument("--per-swap", type=int, default=50, help="ID pairs per swap")
    parser.add_argument("--n-random", type=int, default=20)
    parser.add_argument("--over", nargs="+", default=["corrupt", "resample"])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--csv", default=os.path.join(ROOT, "data", "mib_over_checkpoints.csv"))
    parser.add_argument("--surface-csv", default=os.path.join(ROOT, "data", "mib_surface.csv"))
    parser.add_argument("--out", default=None, help="folder for the figures (PNG)")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    run = load_run(args.run)
    mem = stage_step(run, run.memorization_step)
    gen = stage_step(run, run.grok_step)
    sets = {
        "id": pooled(run.task, "test_id", args.per_swap),
        "ood": pooled(run.task, "test_ood", None),
    }
    print(
        f"run {os.path.relpath(args.run, ROOT)}: checkpoints {run.steps}; memorizing checkpoint "
        f"{mem} (memorization step {run.memorization_step}), generalizing {gen} (ID >= 0.95 at "
        f"step {run.grok_step}); ID pairs {len(sets['id'])} (test_id, {args.per_swap} per swap "
        f"h, r1, r2), OOD pairs {len(sets['ood'])} (test_ood, every query); EAP at each "
        f"checkpoint; MIB's grid; {args.n_random} random edge sets per size; seed 0; torch "
        f"threads {torch.get_num_threads()}"
    )
    frames = []
    surfaces = []

    print("\n== 1. CPR and CMD per ablation, memorizing vs generalizing checkpoint ==")
    start = time.perf_counter()
    rows = []
    for ablation in EDGE_ABLATIONS:
        over = faithfulness_over_checkpoints(
            run,
            sets,
            steps=[mem, gen],
            ablation=ablation,
            n_random=args.n_random,
            seed=0,
            progress=False,
        )
        frame = over.to_frame().reset_index()
        frame.insert(0, "ablation", ablation)
        rows.append(frame)
    table = pd.concat(rows)
    table["checkpoint"] = table["step"].map({mem: "memorizing", gen: "generalizing"})
    frames.append(table.assign(part="stages"))
    show = table.set_index(["set", "checkpoint", "ablation"])[COLUMNS]
    for name in sets:
        print(f"\n{name.upper()} pairs")
        print(show.loc[name].round(3).to_string())
    print(f"({time.perf_counter() - start:.0f} s)")

    print("\n== 2. CPR and CMD at every checkpoint, with the run's accuracy ==")
    for ablation in args.over:
        start = time.perf_counter()
        over = faithfulness_over_checkpoints(
            run, sets, ablation=ablation, n_random=args.n_random, seed=0, progress=False
        )
        frame = over.to_frame()
        print(f"\n{ablation} ablation")
        cols = ["cpr", "random cpr", "cmd", "full metric", "train acc", "id acc", "ood acc"]
        print(frame[cols].round(3).to_string())
        print(f"({time.perf_counter() - start:.0f} s)")
        frames.append(frame.reset_index().assign(part="over checkpoints", ablation=ablation))
        surfaces.append(surface_rows(over))
        if args.out:
            os.makedirs(args.out, exist_ok=True)
            path = os.path.join(args.out, f"mib_over_checkpoints_{ablation}.png")
            over.plot().savefig(path, dpi=120, bbox_inches="tight")
            print(f"figure: {path}")

    if args.csv:
        out = pd.concat(frames, ignore_index=True)
        first = ["part", "ablation", "set", "step", "checkpoint"]
        out = out[first + [c for c in out.columns if c not in first]]
        out.to_csv(args.csv, index=False, float_format="%.6g")
        print(f"\n{len(out)} rows written to {os.path.relpath(args.csv, ROOT)}")
    if args.surface_csv and surfaces:
        out = pd.concat(surfaces, ignore_index=True)
        out.to_csv(args.surface_csv, index=False, float_format="%.6g")
        print(f"{len(out)} rows written to {os.path.relpath(args.surface_csv, ROOT)}")


if __name__ == "__main__":
    main()
