"""Recurrent depth on composition: OOD composition, its three stages, and depth extrapolation.

    python benchmarks/recurrent_depth.py --steps 20000 --jobs 6 --out data/recurrent_depth
    python benchmarks/recurrent_depth.py --from-csv data/recurrent_depth        # print only
    python benchmarks/recurrent_depth.py --steps 200 --seeds 0 --size tiny      # smoke run

Kohli, Parthasarathy, Sun and Yao ("Loop, Think, & Generalize", arXiv 2604.07822, 2026) find that
a recurrent-depth transformer, which iterates the same blocks, composes OOD facts after a
three-stage grokking (memorize, then ID, then OOD), and, trained with a count of iterations
drawn per batch, answers queries of more hops than it was trained on when given more
iterations at inference, until too many iterations hurt ("overthinking"). Two experiments:

1. **Composition** (``composition.csv``, ``stages.csv``): on the tutorial graph at the largest
   phi its ID pool allows (as ``benchmarks/parameter_sharing.py``), three models with the same
   compute per forward pass (``--n-layers`` block applications, default 4): ``standard``
   (``n_layers`` blocks), ``shared`` (the paper's ``n_loops=2``: half the blocks run twice) and
   ``recurrent`` (a core of ``--core`` blocks, default 1, run ``n_layers / core`` times; the
   paper's fixed recurrence, no prelude or coda). Accuracy over steps on ``test_ood``, the
   mixed-hop probes and ``test_id``; the three stages per seed: memorize (training inferred
   accuracy >= 0.99), ID (``test_id`` >= 0.95) and OOD (``test_ood`` >= ``--ood-threshold``,
   default 0.9), the first evaluated step each.
2. **Depth extrapolation** (``depth.csv``, ``drift.csv``): the ``khop`` task trained on
   ``<= --k-train`` hops (default 2; above 2, with the hop curriculum) and tested on up to
   ``2 * k_train``, a recurrent model with the paper's dynamic recurrence (a core of ``--core``
   blocks, the count drawn per batch from a Poisson distribution of mean ``--mean-iterations``
   clipped to ``--train-iterations``); then, at the last checkpoint, accuracy on the ID and OOD
   test split of every hop count for each inference count from 1 to ``--max-iterations`` (the
   heatmap table; along a row, the overthinking curve), and, at the largest count, the share of
   queries whose top decoded token after each iteration is the answer, an intermediate entity
   or another token (:func:`grok_circuits.trace_hops`' drift), per hop count. ``halting.csv``:
   adaptive halting (:func:`grok_circuits.adaptive_halting`; each query stops where its answer's
   distribution stops changing, at KL thresholds :data:`HALT_THRESHOLDS`) on every split, its
   accuracy and mean count beside the best fixed count's accuracy and the last count's.

The seed sets the initial weights and the batch order; the tasks are the same for every seed.
Trials run in parallel processes (``--jobs``, spawned; one torch thread each); the composition
CSV is rewritten from the trials' ``metrics.json`` every few seconds, so a run cut short still
leaves its curves. ``--keep DIR`` keeps the run folders; with ``--resume``, a composition trial
whose folder in ``DIR`` holds a run continues it to ``--steps`` (``--models`` and ``--seeds``
pick which), so a budget can be extended without training again. At the end, ``dissect.csv``
traces each composition trial (:func:`dissect_rows`) at its last checkpoint, or with
``--dissect-from STEP`` at every checkpoint from that step on; ``--collect --keep DIR`` writes the
composition CSVs (and, from depth runs, ``halting.csv``) from whatever runs ``DIR`` holds,
without training. The last lines print the training time per step of each trial.
"""

import argparse
import concurrent.futures as cf
import csv
import json
import multiprocessing as mp
import tempfile
import time
from pathlib import Path

from parameter_sharing import max_phi, the_task

from grok_circuits.io import atomic_write_with

#: The probes the composition CSV records, in its column order.
PROBES = ("train_inferred", "test_id", "test_ood", "test_ood_hop1", "test_ood_hop2")
MODELS = ("standard", "shared", "recurrent")
COMPOSITION_FIELDS = ["model", "seed", "phi", "step", "time"] + [f"{p}_acc" for p in PROBES]
STAGE_FIELDS = ["model", "seed", "memorize_step", "id_step", "ood_step", "last_step"]
DEPTH_FIELDS = ["seed", "iterations", "hops", "kind", "split", "acc"]
DRIFT_FIELDS = ["seed", "hops", "iteration", "top_is", "share"]
#: Adaptive halting's KL thresholds (nats): the literature's 5e-4 and a decade either way and more.
HALT_THRESHOLDS = (1e-1, 1e-2, 1e-3, 5e-4, 1e-4)
HALT_FIELDS = ["seed", "hops", "kind", "split", "kl_threshold", "acc", "mean_iterations"] + [
    "best_fixed_iterations",
    "best_fixed_acc",
    "last_acc",
]
#: The splits the dissection traces: ID, second hop OOD, both hops OOD.
DISSECT_SPLITS = ("test_id", "test_ood_hop2", "test_ood")
DISSECT_FIELDS = ["model", "seed", "step", "split", "row", "label", "bridge_mrr", "answer_mrr"] + [
    f"strength_{p}" for p in ("h", "r1", "r2")
]


# ----------------------------------------------------------------------------- trials
def _base_config(args: dict, seed: int):
    import dataclasses

    from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED

    return dataclasses.replace(
        TUTORIAL_AS_RECORDED,  # the recipe its shipped results were measured with
        max_steps=args["steps"],
        stop_id_acc=None,
        eval_every=args["eval_every"],
        dense_until=0,
        checkpoints_per_decade=3,
        seed=seed,
        device=args["device"],
        threads=1,
        model_size=args["size"],
    )


def composition_trial(model: str, seed: int, args: dict, out: str) -> str:
    """Train one of :data:`MODELS` on the two-hop tutorial task (in its own process)."""
    import dataclasses

    import torch

    from grok_circuits import model_config, train

    torch.set_num_threads(1)
    task = the_task(args["phi"])
    n = args["n_layers"]
    cfg = _base_config(args, seed)
    if model == "shared":
        cfg = dataclasses.replace(cfg, n_loops=2)
    elif model == "recurrent":
        cfg = dataclasses.replace(cfg, core=args["core"], iterations=n // args["core"])
    # With --resume, a trial whose folder already holds a run continues it to --steps (the
    # stored run's config must match; only the step budget may grow).
    resume = args["resume"] and (Path(out) / "metrics.json").is_file()
    model_cfg = model_config(task, args["size"], n_layers=n)
    train(task, cfg, out=out, model_cfg=model_cfg, progress=False, resume=resume)
    return out


def khop_task(k_train: int):
    from grok_circuits import make_task

    return make_task("composition", preset="khop", train_hops=k_train, test_hops=2 * k_train)


def hop_splits(k_train: int) -> list[tuple[int, str, str]]:
    """``(hops, "id" | "ood", split name)`` of every test split up to ``2 * k_train`` hops."""
    out = []
    for m in range(2, 2 * k_train + 1):
        suffix = "" if m == 2 else f"_{m}hop"
        out += [(m, "id", f"test_id{suffix}"), (m, "ood", f"test_ood{suffix}")]
    return out


def depth_trial(seed: int, args: dict, out: str) -> dict:
    """Train the dynamic-recurrence model on <= k_train hops, then measure every hop count at
    every inference count and the drift; returns the CSV rows."""
    import dataclasses

    import torch

    from grok_circuits import model_config, trace_hops, train
    from grok_circuits.analysis.accuracy import accuracy
    from grok_circuits.recurrence import iterations

    torch.set_num_threads(1)
    k = args["k_train"]
    task = khop_task(k)
    lo, hi = args["train_iterations"]
    cfg = dataclasses.replace(
        _base_config(args, seed),
        core=args["core"],
        iterations=(lo, hi),
        iterations_mean=args["mean_iterations"],
        hop_curriculum=0.95 if k > 2 else None,
    )
    depth = args["core"] * hi
    run = train(
        task,
        cfg,
        out=out,
        model_cfg=model_config(
            task, args["size"], n_layers=depth, positional_embedding_type=args["positional"]
        ),
        progress=False,
    )
    model = run.model().eval()
    depth_rows, drift_rows = [], []
    for n in range(1, args["max_iterations"] + 1):
        with iterations(model, n):
            for hops, kind, split in hop_splits(k):
                s = task.splits[split]
                acc = accuracy(model, s) if len(s) else float("nan")
                row = {"seed": seed, "iterations": n, "hops": hops, "kind": kind, "split": split}
                depth_rows.append({**row, "acc": acc})
    for hops, kind, split in hop_splits(k):
        if kind != "id" or not len(task.splits[split]):
            continue
        trace = trace_hops(
            model, task, split=split, iterations=args["max_iterations"], n_examples=300
        )
        for j in range(len(trace.row_labels)):
            for c, what in enumerate(trace.drift_labels):
                share = float(trace.drift[j, c])
                drift_rows.append(
                    {"seed": seed, "hops": hops, "iteration": j + 1, "top_is": what, "share": share}
                )
    halt_rows = halting_rows(model, task, seed, k, args["max_iterations"])
    return {
        "depth": depth_rows,
        "drift": drift_rows,
        "halting": halt_rows,
        "time": run.metrics[-1]["time"],
    }


def halting_rows(model, task, seed: int, k_train: int, max_iterations: int) -> list[dict]:
    """Adaptive halting (:func:`grok_circuits.adaptive_halting`) on every ID and OOD test split
    of every hop count, at each of :data:`HALT_THRESHOLDS`: the accuracy and mean count under
    the rule, beside the best fixed count's and the last count's."""
    from grok_circuits import adaptive_halting

    rows = []
    for hops, kind, split in hop_splits(k_train):
        if not len(task.splits[split]):
            continue
        halting = adaptive_halting(model, task.splits[split], max_iterations=max_iterations)
        best_n, best_acc = halting.best_fixed
        last_acc = float(halting.fixed_accuracy[-1])  # the same for every threshold
        for threshold in HALT_THRESHOLDS:
            h = halting.with_threshold(kl_threshold=threshold)
            rows.append(
                {
                    "seed": seed,
                    "hops": hops,
                    "kind": kind,
                    "split": split,
                    "kl_threshold": threshold,
                    "acc": h.accuracy,
                    "mean_iterations": h.mean_iterations,
                    "best_fixed_iterations": best_n,
                    "best_fixed_acc": best_acc,
                    "last_acc": last_acc,
                }
            )
    return rows


def collect_halting(seed: int, folder: Path, args: dict) -> list[dict]:
    """:func:`halting_rows` for a depth trial kept by an earlier ``--keep`` (its last
    checkpoint), without training."""
    import torch

    from grok_circuits import load_run

    torch.set_num_threads(1)
    run = load_run(folder)
    model = run.model(device="cpu").eval()
    return halting_rows(model, run.task, seed, args["k_train"], args["max_iterations"])


def dissect_rows(model: str, seed: int, folder: Path, from_step: int | None = None) -> list[dict]:
    """Where each kind of query is answered in one trained composition trial, at its last
    checkpoint (or at every checkpoint from ``from_step`` on, to follow it over training):
    :func:`grok_circuits.trace_reasoning` on 300 queries (all of ``test_ood``)
    of each of :data:`DISSECT_SPLITS`, the logit-lens MRR of the bridge at ``r1`` and of the
    answer at ``r2`` after each row of the residual stream (embeddings, then each block: for
    the recurrent model, each iteration), and the causal strength of each block's output at
    each position (the share of answers a patch changes)."""
    import torch

    from grok_circuits import load_run, trace_reasoning

    torch.set_num_threads(1)
    run = load_run(folder)
    steps = run.steps[-1:] if from_step is None else [s for s in run.steps if s >= from_step]
    rows = []
    for step in steps:
        net = run.model(step, device="cpu")
        for split in DISSECT_SPLITS:
            trace = trace_reasoning(net, run.task, split=split, facts="all", n_examples=300)
            scores = trace.strength.scores
            for i, label in enumerate(trace.lens.layer_labels):
                row = {"model": model, "seed": seed, "step": step, "split": split, "row": i}
                row["label"] = label
                row["bridge_mrr"] = float(trace.bridge_mrr[i])
                row["answer_mrr"] = float(trace.answer_mrr[i])
                for j, p in enumerate(("h", "r1", "r2")):
                    row[f"strength_{p}"] = float(scores[i, j]) if i < scores.shape[0] else ""
                rows.append(row)
    return rows


# ----------------------------------------------------------------------------- CSVs
def write_csv(rows: list[dict], path: Path, fields: list[str]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)

    def write(tmp: Path) -> None:
        with open(tmp, "w", newline="") as f:
            w = csv.DictWriter(f, fieldnames=fields)
            w.writeheader()
            w.writerows(rows)

    atomic_write_with(path, write)


def read_csv(path: Path) -> list[dict]:
    if not path.exists():
        return []
    text = ("model", "kind", "split", "top_is")
    with open(path) as f:
        return [
            {k: (v if k in text else float(v) if v != "" else None) for k, v in row.items()}
            for row in csv.DictReader(f)
        ]


def composition_rows(folders: dict[tuple[str, int], Path], phi: float) -> list[dict]:
    """Every evaluation so far of every composition trial, as CSV rows."""
    rows = []
    for (model, seed), folder in folders.items():
        try:
            metrics = json.loads((folder / "metrics.json").read_text())
        except (FileNotFoundError, json.JSONDecodeError):
            continue
        for m in metrics:
            row = {"model": model, "seed": seed, "phi": phi, "step": m["step"], "time": m["time"]}
            rows.append({**row, **{f"{p}_acc": m[f"{p}_acc"] for p in PROBES}})
    return rows


def stage_rows(rows: list[dict], ood_threshold: float) -> list[dict]:
    """The first evaluated step of each stage, per model and seed (empty where never)."""
    from grok_circuits.runs.run import GROK_THRESHOLD, SATURATION_THRESHOLD

    stages = (
        ("memorize_step", "train_inferred", SATURATION_THRESHOLD),
        ("id_step", "test_id", GROK_THRESHOLD),
        ("ood_step", "test_ood", ood_threshold),
    )
    out = []
    for model, seed in sorted({(r["model"], int(r["seed"])) for r in rows}):
        mine = sorted((r for r in rows if r["model"] == model and r["seed"] == seed), key=_step)
        row: dict = {"model": model, "seed": seed, "last_step": int(mine[-1]["step"])}
        for name, probe, threshold in stages:
            hits = [int(r["step"]) for r in mine if r[f"{probe}_acc"] >= threshold]
            row[name] = hits[0] if hits else ""
        out.append(row)
    return out


def write_composition(
    comp: dict[tuple[str, int], Path], phi: float, out: Path, ood_threshold: float
) -> tuple[list[dict], list[dict]]:
    """Write ``composition.csv`` and ``stages.csv`` from the trials' metrics so far (nothing
    when there are no composition trials); returns their rows."""
    rows = composition_rows(comp, phi)
    stages = stage_rows(rows, ood_threshold)
    if comp:
        write_csv(rows, out / "composition.csv", COMPOSITION_FIELDS)
        write_csv(stages, out / "stages.csv", STAGE_FIELDS)
    return rows, stages


def _step(row: dict) -> float:
    return row["step"]


# ----------------------------------------------------------------------------- reports
def report_composition(rows: list[dict], stages: list[dict], every: int) -> None:
    if not rows:
        return
    by: dict = {}
    for r in rows:
        by.setdefault((r["model"], int(r["step"])), []).append(r)
    models = [m for m in MODELS if any(k[0] == m for k in by)]
    seeds = sorted({int(r["seed"]) for r in rows})
    # each model's own seeds (a table collected from runs continued separately may hold fewer
    # seeds of one model): a step is shown once every model has all of its seeds there
    n_seeds = {m: len({int(r["seed"]) for r in rows if r["model"] == m}) for m in models}
    common = sorted(
        s for s in {k[1] for k in by} if all(len(by.get((m, s), [])) == n_seeds[m] for m in models)
    )
    shown = [s for s in common if s % every == 0 or s == common[-1]]
    print(f"two-hop tutorial composition, phi {rows[0]['phi']}, seeds {seeds}")
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
    print("\nthe three stages, first evaluated step (- = not reached)")
    print(f"{'model':<10} {'seed':>4} {'memorize':>9} {'ID':>9} {'OOD':>9} {'last':>9}")
    for r in stages:
        cells = [int(r[k]) if r[k] not in ("", None) else "-" for k in STAGE_FIELDS[2:]]
        print(f"{r['model']:<10} {int(r['seed']):>4} " + " ".join(f"{c!s:>9}" for c in cells))


def report_depth(rows: list[dict], drift: list[dict]) -> None:
    if not rows:
        return
    seeds = sorted({int(r["seed"]) for r in rows})
    counts = sorted({int(r["iterations"]) for r in rows})
    for kind in ("id", "ood"):
        cols = sorted({int(r["hops"]) for r in rows if r["kind"] == kind})
        print(f"\ndepth extrapolation, {kind.upper()} accuracy (mean over seeds {seeds})")
        print("iterations " + "".join(f"{f'{m} hops':>10}" for m in cols))
        for n in counts:
            cells = []
            for m in cols:
                accs = [
                    r["acc"]
                    for r in rows
                    if r["kind"] == kind and r["iterations"] == n and r["hops"] == m
                ]
                accs = [a for a in accs if a is not None and a == a]
                cells.append(f"{sum(accs) / len(accs):.3f}" if accs else "-")
            print(f"{n:<11}" + "".join(f"{c:>10}" for c in cells))
    print(
        "\noverthinking: the best inference count per hop count (ID), accuracy there, at the last"
    )
    for m in sorted({int(r["hops"]) for r in rows}):
        curve = {}
        for n in counts:
            accs = [
                r["acc"]
                for r in rows
                if r["kind"] == "id" and r["hops"] == m and r["iterations"] == n
            ]
            curve[n] = sum(accs) / len(accs)
        best = max(curve, key=lambda n: curve[n])
        print(
            f"  {m} hops: best {best} iterations ({curve[best]:.3f}); at {counts[-1]}: "
            f"{curve[counts[-1]]:.3f}"
        )
    if drift:
        last = max(int(r["iteration"]) for r in drift)
        print(f"\nafter iteration {last}, the top decoded token is (ID queries, mean over seeds)")
        for m in sorted({int(r["hops"]) for r in drift}):
            kinds: dict = {}
            for r in drift:
                if r["hops"] == m and r["iteration"] == last:
                    kinds.setdefault(r["top_is"], []).append(r["share"])
            shares = ", ".join(f"{k} {sum(v) / len(v):.2f}" for k, v in kinds.items())
            print(f"  {m} hops: {shares}")


def report_halting(rows: list[dict]) -> None:
    if not rows:
        return
    seeds = sorted({int(r["seed"]) for r in rows})
    print(
        f"\nadaptive halting (halt where KL(p_n || p_n-1) < threshold), mean over seeds {seeds}:"
        "\naccuracy at mean iterations; the best fixed count; the last count"
    )
    for kind in ("id", "ood"):
        for hops in sorted({int(r["hops"]) for r in rows if r["kind"] == kind}):
            mine = [r for r in rows if r["kind"] == kind and r["hops"] == hops]
            first = [r for r in mine if r["kl_threshold"] == mine[0]["kl_threshold"]]
            best = sum(r["best_fixed_acc"] for r in first) / len(first)
            best_n = sorted(int(r["best_fixed_iterations"]) for r in first)
            last = sum(r["last_acc"] for r in first) / len(first)
            cells = []
            for t in sorted({r["kl_threshold"] for r in mine}, reverse=True):
                at = [r for r in mine if r["kl_threshold"] == t]
                acc = sum(r["acc"] for r in at) / len(at)
                n = sum(r["mean_iterations"] for r in at) / len(at)
                cells.append(f"{t:g}: {acc:.3f} @ {n:.1f}")
            print(
                f"  {kind.upper()} {hops} hops  " + "; ".join(cells) + f"  | best fixed {best:.3f}"
                f" (counts {best_n}); last {last:.3f}"
            )


def dissect(comp: dict[tuple[str, int], Path], out: Path, from_step: int | None = None) -> None:
    """Write ``dissect.csv`` for every composition trial (its last checkpoint, or every one from
    ``from_step`` on) and print, per model and split, the logit-lens MRR of the bridge and of the
    answer after the last row at each run's last checkpoint (mean over seeds)."""
    rows = [r for (m, s), f in comp.items() for r in dissect_rows(m, s, f, from_step)]
    write_csv(rows, out / "dissect.csv", DISSECT_FIELDS)
    last_step = {}
    for r in rows:
        key = (r["model"], r["seed"])
        last_step[key] = max(last_step.get(key, r["step"]), r["step"])
    rows = [r for r in rows if r["step"] == last_step[(r["model"], r["seed"])]]
    print("\nlogit-lens MRR after the last row, mean over seeds (bridge at r1 / answer at r2)")
    for split in DISSECT_SPLITS:
        cells = []
        for model in MODELS:
            mine = [r for r in rows if r["model"] == model and r["split"] == split]
            if not mine:
                continue
            last = max(r["row"] for r in mine)
            end = [r for r in mine if r["row"] == last]
            bridge = sum(r["bridge_mrr"] for r in end) / len(end)
            answer = sum(r["answer_mrr"] for r in end) / len(end)
            cells.append(f"{model} {bridge:.2f} / {answer:.2f}")
        print(f"  {split:<14} " + "; ".join(cells))


def report_times(rows: list[dict], depth_times: dict[int, float], steps: int) -> None:
    last: dict = {}
    for r in rows:
        key = (r["model"], int(r["seed"]))
        if r["step"] >= last.get(key, {"step": -1})["step"]:
            last[key] = r
    print("\ntraining time per step (s, wall clock, this machine)")
    for (model, seed), r in sorted(last.items()):
        if r["step"]:
            print(f"  composition {model} seed {seed}: {r['time'] / r['step']:.4f}")
    for seed, t in sorted(depth_times.items()):
        print(f"  depth extrapolation seed {seed}: {t / steps:.4f}")


# ----------------------------------------------------------------------------- main
def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=20000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel")
    parser.add_argument("--device", default="cpu", help="cpu, cuda, auto")
    parser.add_argument("--size", default="tutorial", help="model size preset (tiny for smoke)")
    parser.add_argument("--n-layers", type=int, default=4, help="block applications per pass")
    parser.add_argument("--core", type=int, default=1, help="blocks of the recurrent core")
    parser.add_argument("--phi", type=float, help="composition: default the largest allowed")
    parser.add_argument("--ood-threshold", type=float, default=0.9)
    parser.add_argument("--k-train", type=int, default=2, help="depth: train on <= k hops")
    parser.add_argument("--train-iterations", type=int, nargs=2, default=[2, 6])
    parser.add_argument("--mean-iterations", type=float, default=4.0)
    parser.add_argument("--max-iterations", type=int, default=12)
    parser.add_argument(
        "--positional",
        choices=["standard", "rotary"],
        default="standard",
        help="depth: the model's position embedding (learned absolute, or rotary: relative, "
        "with no parameter per position, so a longer query reaches no untrained weight)",
    )
    parser.add_argument("--only", choices=["composition", "depth"], help="run one experiment")
    parser.add_argument("--eval-every", type=int, default=250)
    parser.add_argument("--out", type=Path, default=Path("recurrent_depth"), help="CSV folder")
    parser.add_argument("--keep", type=Path, help="keep the run folders here")
    parser.add_argument("--from-csv", type=Path, help="print the report of a CSV folder and exit")
    parser.add_argument(
        "--models", nargs="+", choices=MODELS, default=list(MODELS), help="composition models"
    )
    parser.add_argument(
        "--resume",
        action="store_true",
        help="with --keep: continue the composition runs found there to --steps",
    )
    parser.add_argument(
        "--collect",
        action="store_true",
        help="write the CSVs from the runs kept in --keep, without training: composition, "
        "stages and dissect from the composition runs, halting from the depth runs; a model "
        "and seed with no run there is left out",
    )
    parser.add_argument(
        "--dissect-from",
        type=int,
        metavar="STEP",
        help="dissect every checkpoint from STEP on, not only the last (dissect.csv's step)",
    )
    parser.add_argument("--print-every", type=int, default=1000, help="report rows every N steps")
    args = parser.parse_args()
    if args.from_csv:
        d = args.from_csv
        report_composition(
            read_csv(d / "composition.csv"), read_csv(d / "stages.csv"), args.print_every
        )
        report_depth(read_csv(d / "depth.csv"), read_csv(d / "drift.csv"))
        report_halting(read_csv(d / "halting.csv"))
        return
    if args.n_layers % 2 or args.n_layers % args.core:
        parser.error(f"--n-layers ({args.n_layers}) must be even and a multiple of --core")
    lo, hi = args.train_iterations
    if not 1 <= lo <= hi or not lo <= args.mean_iterations <= hi:
        parser.error("--train-iterations LO HI needs 1 <= LO <= --mean-iterations <= HI")
    phi = args.phi or max_phi(the_task(None))
    opts = {
        "phi": phi,
        "steps": args.steps,
        "eval_every": args.eval_every,
        "device": args.device,
        "size": args.size,
        "n_layers": args.n_layers,
        "core": args.core,
        "k_train": args.k_train,
        "train_iterations": (lo, hi),
        "mean_iterations": args.mean_iterations,
        "max_iterations": args.max_iterations,
        "positional": args.positional,
        "resume": args.resume,
    }
    root = args.keep or Path(tempfile.mkdtemp(prefix="recurrent_depth-"))
    comp = (
        {}
        if args.only == "depth"
        else {(m, s): root / f"{m}_seed{s}" for s in args.seeds for m in args.models}
    )
    deep = {} if args.only == "composition" else {s: root / f"depth_seed{s}" for s in args.seeds}
    if args.collect:
        if not args.keep:
            parser.error("--collect reads the runs of an earlier --keep DIR: pass --keep")
        comp = {k: f for k, f in comp.items() if (f / "metrics.json").is_file()}
        deep = {s: f for s, f in deep.items() if (f / "metrics.json").is_file()}
        if not comp and not deep:
            parser.error(f"--collect: no composition or depth run in {args.keep}")
        print(f"collecting {len(comp)} composition runs {sorted(comp)}, depth seeds {sorted(deep)}")
        if comp:
            rows, stages = write_composition(comp, phi, args.out, args.ood_threshold)
            dissect(comp, args.out, args.dissect_from)
            report_composition(rows, stages, args.print_every)
        if deep:
            halt = [r for s, f in sorted(deep.items()) for r in collect_halting(s, f, opts)]
            write_csv(halt, args.out / "halting.csv", HALT_FIELDS)
            report_halting(halt)
        return
    print(
        f"{len(comp) + len(deep)} trials, {args.jobs} at a time, device {args.device}; "
        f"runs in {root}"
    )
    t0 = time.perf_counter()
    depth_rows: list[dict] = []
    drift_rows: list[dict] = []
    halt_rows: list[dict] = []
    depth_times: dict[int, float] = {}
    out = args.out

    def save() -> list[dict]:
        return write_composition(comp, phi, out, args.ood_threshold)[0]

    ctx = mp.get_context("spawn")
    with cf.ProcessPoolExecutor(max_workers=args.jobs, mp_context=ctx) as pool:
        futures = {
            pool.submit(composition_trial, m, s, opts, str(f)): ("composition", m, s)
            for (m, s), f in comp.items()
        }
        futures.update(
            {pool.submit(depth_trial, s, opts, str(f)): ("depth", s) for s, f in deep.items()}
        )
        pending = set(futures)
        while pending:
            done, pending = cf.wait(pending, timeout=10)
            for f in done:
                result = f.result()  # a failed trial stops the benchmark with its error
                what = futures[f]
                if what[0] == "depth":
                    depth_rows += result["depth"]
                    drift_rows += result["drift"]
                    halt_rows += result["halting"]
                    depth_times[what[1]] = result["time"]
                    write_csv(depth_rows, out / "depth.csv", DEPTH_FIELDS)
                    write_csv(drift_rows, out / "drift.csv", DRIFT_FIELDS)
                    write_csv(halt_rows, out / "halting.csv", HALT_FIELDS)
                print(f"done: {what} after {time.perf_counter() - t0:.0f} s", flush=True)
            save()
    print(f"all trials done in {time.perf_counter() - t0:.0f} s; CSVs in {out}\n")
    rows, stages = write_composition(comp, phi, out, args.ood_threshold)
    if comp:
        dissect(comp, out, args.dissect_from)
    report_composition(rows, stages, args.print_every)
    report_depth(depth_rows, drift_rows)
    report_halting(halt_rows)
    report_times(rows, depth_times, args.steps)


if __name__ == "__main__":
    main()
