"""The phi law at tutorial scale: steps (and epochs) to memorize and to generalize, against phi
and against the number of entities (section 3.2 and Fig. 2 of the paper).

    python benchmarks/phi_law.py --device cuda --jobs 14 --out data/phi_law.csv
    python benchmarks/phi_law.py --seeds 0 --phis 3.6 9.0 --entities 100 --max-steps 300  # a try
    python benchmarks/phi_law.py --sweep runs/phi_law  # the same trials through grok-circuits sweep

The paper's claims: the speed of grokking follows phi (inferred / ID atomic facts), not the size
of the data; at phi = 18 ID accuracy is reached before training accuracy saturates; at a fixed
phi, changing the number of entities leaves the gap between memorizing and generalizing roughly
unchanged in epochs.

Every trial trains the tutorial composition recipe as the shipped curves were measured
(``grok_circuits.tasks.composition.TUTORIAL_AS_RECORDED``: float32, constant learning rate and
weight decay) on a composition task that differs from the tutorial one only in the swept
parameter, with one seed for the data and the weights. "Memorize" is the first evaluation with
training (inferred) accuracy >= 0.99 and "generalize" the first with ID accuracy >= 0.95
(``Run.saturation_step`` and ``Run.grok_step``); epochs are steps x batch size / training-set
rows. A trial stops at the first evaluation where both hold, at ``--max-steps``, or when
``--time-budget`` seconds have passed since the start (it then records how far it got: a step
not reached is empty, and ``status`` says why).

Experiments (``experiment`` column): ``phi`` (phi in ``--phis`` on the tutorial graph, 100
entities of out-degree 10, whose pool holds phi <= 9); ``entities`` (``--entities`` at phi
``--entity-phi``); ``phi_d20`` (phi 7.2 and 18 on 100 entities of out-degree 20, the only graph
here whose pool holds phi = 18). The CSV gets one row per trial as soon as it ends.

The baseline of each figure is the same measurement at the other settings of the same run: the
benchmark prints, per experiment, the ratio of the generalizing step (and gap in epochs) to that
of the first setting.
"""

import argparse
import concurrent.futures as cf
import csv
import dataclasses
import multiprocessing as mp
import shutil
import sys
import tempfile
import time
from pathlib import Path

COLUMNS = [
    "experiment",
    "n_entities",
    "out_degree",
    "phi",
    "seed",
    "train_rows",
    "memorize_step",
    "generalize_step",
    "gap_steps",
    "memorize_epoch",
    "generalize_epoch",
    "gap_epochs",
    "last_step",
    "train_acc",
    "id_acc",
    "ood_acc",
    "status",
    "seconds",
    "device",
]


def train_in_chunks(task, cfg, out, *, chunk: int, deadline: float, on_chunk=None):
    """Train ``task`` with ``cfg`` into ``out`` ``chunk`` steps at a time (resuming exactly),
    until the run stops by its own rule, reaches ``cfg.max_steps`` or ``time.time()`` passes
    ``deadline``. Returns (run, status) with status ``"stopped"``, ``"max_steps"`` or
    ``"time"``; ``on_chunk(run)`` is called after every chunk."""
    from grok_circuits.training.loop import train

    target = 0
    while True:
        target = min(target + chunk, cfg.max_steps)
        run = train(
            task, dataclasses.replace(cfg, max_steps=target), out=out, resume=True, progress=False
        )
        if on_chunk is not None:
            on_chunk(run)
        if run.last_step < target:
            return run, "stopped"
        if target >= cfg.max_steps:
            return run, "max_steps"
        if time.time() > deadline:
            return run, "time"


def key(spec: dict) -> tuple:
    """What makes two trials the same run."""
    return spec["n_entities"], spec["out_degree"], spec["phi"], spec["seed"]


def epochs(step, batch: int, rows: int):
    return None if step is None else round(step * batch / rows, 2)


CURVE_COLUMNS = [
    "experiment",
    "n_entities",
    "out_degree",
    "phi",
    "seed",
    "step",
    "epoch",
    "train_acc",
    "id_acc",
]


#: The TrainConfig fields every trial changes from the tutorial composition preset.
TRIAL_TRAIN = dict(
    stop_id_acc=0.95,
    stop_train_acc=0.99,
    stop_patience=1,
    threads=1,
    dense_until=0,
    checkpoints_per_decade=1,
)


def trial(spec: dict) -> tuple[dict, list[dict]]:
    """One training run; returns its CSV row and its accuracy curve (one row per evaluation)."""
    import contextlib
    import io

    import torch

    from grok_circuits.tasks import make_task
    from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED

    torch.set_num_threads(1)
    t0 = time.time()
    task = make_task(
        "composition",
        preset="tutorial",
        n_entities=spec["n_entities"],
        out_degree=spec["out_degree"],
        phi=spec["phi"],
        seed=spec["seed"],
    )
    cfg = dataclasses.replace(
        TUTORIAL_AS_RECORDED,  # the recipe its shipped curves were measured with
        max_steps=spec["max_steps"],
        seed=spec["seed"],
        device=spec["device"],
        **TRIAL_TRAIN,
    )
    tmp = tempfile.mkdtemp(prefix="phi_law_")
    try:
        with contextlib.redirect_stdout(io.StringIO()):  # "resumed from step ..." per chunk
            run, status = train_in_chunks(
                task, cfg, Path(tmp) / "run", chunk=spec["chunk"], deadline=spec["deadline"]
            )
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
    return results(spec, run, status, seconds=time.time() - t0)


def results(spec: dict, run, status: str, seconds: float) -> tuple[dict, list[dict]]:
    """A finished trial's CSV row and accuracy curve."""
    mem, gen = run.saturation_step, run.grok_step
    k, last = run.key_probes, run.metrics[-1]
    batch, rows = run.train_cfg.batch_size, len(run.task.train)
    curve = [
        {
            **{c: spec[c] for c in ("n_entities", "out_degree", "phi", "seed")},
            "step": m["step"],
            "epoch": epochs(m["step"], batch, rows),
            "train_acc": round(m[f"{k['train']}_acc"], 4),
            "id_acc": round(m[f"{k['id']}_acc"], 4),
        }
        for m in run.metrics
    ]
    row = {
        **{c: spec[c] for c in ("experiment", "n_entities", "out_degree", "phi", "seed")},
        "train_rows": rows,
        "memorize_step": mem,
        "generalize_step": gen,
        "gap_steps": None if mem is None or gen is None else gen - mem,
        "memorize_epoch": epochs(mem, batch, rows),
        "generalize_epoch": epochs(gen, batch, rows),
        "gap_epochs": None if mem is None or gen is None else epochs(gen - mem, batch, rows),
        "last_step": run.last_step,
        "train_acc": round(last[f"{k['train']}_acc"], 4),
        "id_acc": round(last[f"{k['id']}_acc"], 4),
        "ood_acc": round(last[f"{k['ood']}_acc"], 4),
        "status": "grokked" if gen is not None and mem is not None else status,
        "seconds": round(seconds, 1),
        "device": run.train_cfg.device,
    }
    return row, curve


def sweep_trials(unique: list[dict], args):
    """Every trial through the sweep engine (``--sweep DIR``): one run folder per setting under
    DIR, in parallel on Ray (or in-process with ``--sweep-local``), resumable by running the same
    command again. Yields (row, curve) per trial, with ``seconds`` counted from the start of
    the sweep; ``--time-budget`` and ``--chunk`` do not apply (a trial stops by its own rule or
    at ``--max-steps``)."""
    from grok_circuits.sweeps import sweep

    keys = ("n_entities", "out_degree", "phi", "seed")
    spec = {
        "task": "composition",
        "preset": "tutorial",
        "runs": [{k: s[k] for k in keys} for s in unique],
        "train": {"max_steps": args.max_steps, "device": args.device, **TRIAL_TRAIN},
    }
    start = time.time()
    result = sweep(spec, args.sweep, engine="local" if args.sweep_local else "ray")
    runs = result.runs()
    for trial, s in zip(result.trials, unique):
        run = runs[trial.name]
        status = "stopped" if run.last_step < args.max_steps else "max_steps"
        yield results(s, run, status, seconds=time.time() - start)


def trials(args) -> list[dict]:
    deadline = time.time() + args.time_budget
    common = dict(max_steps=args.max_steps, device=args.device, chunk=args.chunk, deadline=deadline)
    specs = []
    for seed in args.seeds:
        for phi in args.phis:
            specs.append(dict(experiment="phi", n_entities=100, out_degree=10, phi=phi, seed=seed))
        for n in args.entities:
            specs.append(
                dict(
                    experiment="entities",
                    n_entities=n,
                    out_degree=10,
                    phi=args.entity_phi,
                    seed=seed,
                )
            )
        for phi in args.d20_phis:
            specs.append(
                dict(experiment="phi_d20", n_entities=100, out_degree=20, phi=phi, seed=seed)
            )
    return [{**s, **common} for s in specs]


def summarize(rows: list[dict]) -> None:
    """Per experiment and setting: the mean over seeds, and the ratio to the first setting."""
    print(
        "\nexperiment  N    deg  phi    seeds  memorize step (epoch)   generalize step (epoch)"
        "   gap epochs   ratio of generalize step to the first setting"
    )
    for exp in ("phi", "entities", "phi_d20"):
        group = [r for r in rows if r["experiment"] == exp]
        settings = sorted({(r["n_entities"], r["out_degree"], r["phi"]) for r in group})
        base = None
        for n, d, phi in settings:
            rs = [r for r in group if (r["n_entities"], r["out_degree"], r["phi"]) == (n, d, phi)]

            def show(key, rs=rs):
                vals = [r[key] for r in rs]
                return "/".join("-" if v in (None, "") else f"{float(v):g}" for v in vals)

            gens = [r["generalize_step"] for r in rs]
            mean_gen = (
                sum(float(g) for g in gens) / len(gens)
                if all(g not in (None, "") for g in gens)
                else None
            )
            if base is None:
                base = mean_gen
            ratio = f"{mean_gen / base:.2f}x" if mean_gen is not None and base else "-"
            print(
                f"{exp:<11} {n:<4} {d:<4} {phi:<6} {','.join(str(r['seed']) for r in rs):<6} "
                f"{show('memorize_step')} ({show('memorize_epoch')})   "
                f"{show('generalize_step')} ({show('generalize_epoch')})   "
                f"{show('gap_epochs')}   {ratio}"
            )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--out", default="phi_law.csv", help="the CSV (rows appended as done)")
    parser.add_argument(
        "--curves", default=None, help="CSV of accuracy per evaluation (default: OUT_curves.csv)"
    )
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--phis", type=float, nargs="+", default=[3.6, 5.4, 7.2, 9.0])
    parser.add_argument("--entities", type=int, nargs="+", default=[50, 100, 200])
    parser.add_argument("--entity-phi", type=float, default=7.2)
    parser.add_argument("--d20-phis", type=float, nargs="*", default=[7.2, 18.0])
    parser.add_argument("--max-steps", type=int, default=6000)
    parser.add_argument("--chunk", type=int, default=500, help="steps between time checks")
    parser.add_argument("--time-budget", type=float, default=1e9, help="seconds for all trials")
    parser.add_argument("--jobs", type=int, default=1, help="trials in parallel processes")
    parser.add_argument("--device", default="cpu")
    parser.add_argument(
        "--sweep", type=Path, help="train through grok_circuits.sweeps into this folder (on Ray)"
    )
    parser.add_argument("--sweep-local", action="store_true", help="with --sweep: no Ray")
    args = parser.parse_args()

    specs = trials(args)
    # The "entities" trial at 100 entities and phi 7.2 is the "phi" trial of the same seed.
    seen, unique = set(), []
    for s in specs:
        if key(s) not in seen:
            seen.add(key(s))
            unique.append(s)
    print(f"{len(unique)} trials on {args.device}, {args.jobs} at a time", flush=True)
    rows = []
    curves_path = args.curves or args.out.removesuffix(".csv") + "_curves.csv"
    with open(args.out, "a", newline="") as f, open(curves_path, "a", newline="") as fc:
        writer, curve_writer = csv.DictWriter(f, COLUMNS), csv.DictWriter(fc, CURVE_COLUMNS)
        if f.tell() == 0:
            writer.writeheader()
        if fc.tell() == 0:
            curve_writer.writeheader()
        if args.sweep is not None:
            done = sweep_trials(unique, args)
        else:
            ctx = mp.get_context("spawn")
            pool = cf.ProcessPoolExecutor(args.jobs, mp_context=ctx)
            futures = [pool.submit(trial, s) for s in unique]
            done = (fut.result() for fut in cf.as_completed(futures))
        for row, curve in done:
            # one row (and curve) per experiment that asked for this setting
            for s in specs:
                if key(s) == key(row):
                    rows.append({**row, "experiment": s["experiment"]})
                    writer.writerow(rows[-1])
                    curve_writer.writerows({**c, "experiment": s["experiment"]} for c in curve)
            f.flush()
            fc.flush()
            print(
                f"{row['experiment']:<9} N={row['n_entities']} deg={row['out_degree']} "
                f"phi={row['phi']} seed={row['seed']}: memorize {row['memorize_step']} "
                f"generalize {row['generalize_step']} ({row['status']}, last step "
                f"{row['last_step']}, {row['seconds']} s)",
                flush=True,
            )
        if args.sweep is None:
            pool.shutdown()
    summarize(rows)


if __name__ == "__main__":
    sys.exit(main())
