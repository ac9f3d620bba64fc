"""Do the grokking accelerators of the literature speed up the tutorial composition task?

    python benchmarks/accelerators.py --device cuda --jobs 24 --out results/   # the full table
    python benchmarks/accelerators.py --configs adamw grokfast_ema --seeds 0 --max-steps 200
    python benchmarks/accelerators.py --shipped data/runs/composition          # lead time, CPU
    python benchmarks/accelerators.py --cost                                   # measures' cost

Trains the tutorial composition recipe as its shipped results were measured
(``grok_circuits.tasks.composition.TUTORIAL_AS_RECORDED``: float32, constant learning rate and
weight decay) with each plug-in of
``grok_circuits.training.plugins``
switched on alone, with plain AdamW, and with plain AdamW at 2x and 4x
the learning rate: the fairness control, since much of a gradient filter's effect may be a larger
effective step. Each trial stops at the first evaluation with ID accuracy >= 0.95 or at
``--max-steps``. For each configuration, over the seeds (``TrainConfig.seed``: initial weights
and batch order; the task is the tutorial one), it prints the step and seconds of memorizing
(training inferred accuracy >= 0.99) and of generalizing (ID >= 0.95), the OOD accuracy at the
end, and the ratio of mean steps to grok against plain AdamW measured in the same run
(">" when some seed had not grokked within the budget, whose step then counts as the budget).

It also reports:

- the circuit: ``find_circuit(model, task)`` (patching, default threshold) at each trial's last
  checkpoint (the generalizing one, if it grokked), and its Jaccard overlap with plain AdamW's
  circuit of the same seed; plain AdamW's seeds against each other are the control;
- the lead time of the progress measure ``lens_mid_bridge@r1_mrr`` (logged during training on
  training inferred examples only): how many steps before ID accuracy first reaches 0.5 and 0.95
  the measure first reaches :data:`LEAD_THRESHOLD` (0.5: the bridge ranked about second on
  average), fixed before any run. A negative lead means it crossed later; "never" that it did
  not cross before the run ended.

Results go to ``--out`` as ``accelerators.csv`` (one row per trial, written as trials finish, so
an interrupted run keeps what it finished) and ``accelerators.json`` (also every trial's
metrics).
"""

import argparse
import csv
import dataclasses
import json
import os
import statistics
import sys
import tempfile
import time
from concurrent.futures import ProcessPoolExecutor, as_completed
from multiprocessing import get_context
from pathlib import Path

#: Each configuration: changes to the tutorial preset.
CONFIGS: dict[str, dict] = {
    "adamw": {},
    "adamw_lr2x": {"lr_scale": 2.0},
    "adamw_lr4x": {"lr_scale": 4.0},
    "grokfast_ema": dict(grad_filter="ema", grad_filter_alpha=0.98, grad_filter_lamb=2.0),
    "grokfast_ma": dict(grad_filter="ma", grad_filter_window=100, grad_filter_lamb=5.0),
    "stablemax": dict(loss="stablemax"),
    "orthograd": dict(orthograd=True),
    "float64_loss": dict(loss_float64=True),
}
BASELINE = "adamw"
LEAD_MEASURE = "lens_mid_bridge@r1_mrr"
#: Fixed before any run: MRR 0.5 means the bridge ranks about second on average.
LEAD_THRESHOLD = 0.5
ID_LEVELS = (0.5, 0.95)
CSV_FIELDS = [
    "config",
    "seed",
    "mem_step",
    "mem_s",
    "grok_step",
    "grok_s",
    "last_step",
    "last_s",
    "final_id",
    "final_ood",
    "measure_step",
    "id50_step",
    "lead50",
    "lead95",
    "circuit",
    "circuit_jaccard_vs_adamw",
]


def trial_config(name: str, seed: int, device: str, max_steps: int):
    from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED

    base = TUTORIAL_AS_RECORDED  # the recipe its shipped results were measured with
    changes = dict(CONFIGS[name])
    lr = base.lr * changes.pop("lr_scale", 1.0)
    return dataclasses.replace(
        base,
        lr=lr,
        seed=seed,
        device=device,
        threads=1,
        max_steps=max_steps,
        stop_id_acc=0.95,
        stop_patience=1,
        dense_until=0,  # few checkpoints: the measures are in the metrics
        checkpoints_per_decade=1,
        keep_states=1,
        **changes,
    )


def first_step(metrics: list[dict], column: str, level: float) -> int | None:
    return next((r["step"] for r in metrics if r.get(column, -1) >= level), None)


def time_at(metrics: list[dict], step: int | None) -> float | None:
    return next((r["time"] for r in metrics if r["step"] == step), None)


def run_trial(name: str, seed: int, device: str, max_steps: int, circuit: bool) -> dict:
    """Train one configuration and seed; return its row (and metrics)."""
    import torch

    torch.set_num_threads(1)
    from grok_circuits import find_circuit, make_task, train

    task = make_task("composition", preset="tutorial")
    cfg = trial_config(name, seed, device, max_steps)
    with tempfile.TemporaryDirectory() as out:
        run = train(task, cfg, out=out, progress=False)
        m = run.metrics
        row = dict(config=name, seed=seed)
        row["mem_step"] = run.saturation_step
        row["grok_step"] = run.grok_step
        row["mem_s"], row["grok_s"] = time_at(m, row["mem_step"]), time_at(m, row["grok_step"])
        row["last_step"], row["last_s"] = m[-1]["step"], m[-1]["time"]
        row["final_id"], row["final_ood"] = m[-1]["test_id_acc"], m[-1]["test_ood_acc"]
        row.update(lead_times(m))
        if circuit:
            c = find_circuit(run.model(run.steps[-1]), task)
            row["circuit"] = " ".join(str(x) for x in c.components)
        row["metrics"] = m
    return row


def lead_times(metrics: list[dict], measure: str = LEAD_MEASURE) -> dict:
    """Steps by which ``measure`` crossing :data:`LEAD_THRESHOLD` precedes ID crossing 0.5 and
    0.95 (None when either never crossed)."""
    ms = first_step(metrics, measure, LEAD_THRESHOLD)
    id50, id95 = (first_step(metrics, "test_id_acc", lvl) for lvl in ID_LEVELS)
    lead = lambda s: None if s is None or ms is None else s - ms  # noqa: E731
    return dict(measure_step=ms, id50_step=id50, lead50=lead(id50), lead95=lead(id95))


def jaccard(a: str, b: str) -> float:
    a, b = set(a.split()), set(b.split())
    return len(a & b) / len(a | b) if a | b else 1.0


# ----------------------------------------------------------------------------- reporting
def fmt(values: list, spec: str = ",.0f") -> str:
    """``mean [min-max]`` of the values, "-" for None ones counted as missing."""
    got = [v for v in values if v is not None]
    if not got:
        return "never"
    miss = f" ({len(values) - len(got)} never)" if len(got) < len(values) else ""
    if len(got) == 1:
        return f"{got[0]:{spec}}{miss}"
    return f"{statistics.mean(got):{spec}} [{min(got):{spec}}-{max(got):{spec}}]{miss}"


def summarize(rows: list[dict], max_steps: int) -> str:
    by = {}
    for r in rows:
        by.setdefault(r["config"], []).append(r)
    base = by.get(BASELINE, [])
    base_steps = [r["grok_step"] or max_steps for r in base]
    lines = [
        "| config | seeds | memorize step | memorize s | grok step | grok s | final OOD | "
        "steps to grok / adamw | circuit Jaccard vs adamw (same seed) |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        rs = sorted(by.get(name, []), key=lambda r: r["seed"])
        if not rs:
            continue
        steps = [r["grok_step"] or max_steps for r in rs]
        never = any(r["grok_step"] is None for r in rs) or any(r["grok_step"] is None for r in base)
        ratio = "-"
        if base_steps:
            ratio = (
                f"{'>' if never else ''}{statistics.mean(steps) / statistics.mean(base_steps):.2f}"
            )
        jac = [r.get("circuit_jaccard_vs_adamw") for r in rs]
        lines.append(
            f"| {name} | {','.join(str(r['seed']) for r in rs)} | "
            f"{fmt([r['mem_step'] for r in rs])} | {fmt([r['mem_s'] for r in rs], '.0f')} | "
            f"{fmt([r['grok_step'] for r in rs])} | {fmt([r['grok_s'] for r in rs], '.0f')} | "
            f"{fmt([r['final_ood'] for r in rs], '.2f')} | {ratio} | {fmt(jac, '.2f')} |"
        )
    lines += [
        "",
        f"Lead of {LEAD_MEASURE} >= {LEAD_THRESHOLD} before ID >= 0.5 / ID >= 0.95 (steps):",
        "| config | seed | measure step | ID 0.5 step | ID 0.95 step | lead to 0.5 "
        "| lead to 0.95 |",
        "|---|---|---|---|---|---|---|",
    ]
    for name in CONFIGS:
        for r in sorted(by.get(name, []), key=lambda r: r["seed"]):
            show = lambda v: "never" if v is None else f"{v:,}"  # noqa: E731
            lines.append(
                f"| {name} | {r['seed']} | {show(r['measure_step'])} | {show(r['id50_step'])} | "
                f"{show(r['grok_step'])} | {show(r['lead50'])} | {show(r['lead95'])} |"
            )
    if len(base) >= 2 and all(r.get("circuit") is not None for r in base):
        pairs = [
            jaccard(a["circuit"], b["circuit"]) for i, a in enumerate(base) for b in base[i + 1 :]
        ]
        lines.append(
            f"\nControl: plain AdamW's circuits of different seeds overlap with Jaccard "
            f"{fmt(pairs, '.2f')} ({len(pairs)} pairs)."
        )
    return "\n".join(lines)


def add_jaccard(rows: list[dict]) -> None:
    base = {r["seed"]: r.get("circuit") for r in rows if r["config"] == BASELINE}
    for r in rows:
        if r.get("circuit") is not None and base.get(r["seed"]) is not None:
            r["circuit_jaccard_vs_adamw"] = round(jaccard(r["circuit"], base[r["seed"]]), 3)


# ----------------------------------------------------------------------------- extras
def shipped_lead(path: str) -> None:
    """The lead measure computed after the fact from a run's checkpoints (CPU)."""
    import torch

    torch.set_num_threads(1)
    from grok_circuits import load_run
    from grok_circuits.training.progress_measures import progress_measures

    run = load_run(path)
    task = run.task
    id_at = {r["step"]: r["test_id_acc"] for r in run.metrics}
    rows = []
    print(f"{path}: {LEAD_MEASURE} at each checkpoint (threshold {LEAD_THRESHOLD})")
    print("| step | test ID acc | train inferred acc | measure | softmax collapse | grad align |")
    print("|---|---|---|---|---|---|")
    train_at = {r["step"]: r["train_inferred_acc"] for r in run.metrics}
    for s in run.steps:
        m = progress_measures(run.model(s), task)
        rows.append({"step": s, "test_id_acc": id_at[s], LEAD_MEASURE: m[LEAD_MEASURE]})
        print(
            f"| {s:,} | {id_at[s]:.3f} | {train_at[s]:.3f} | {m[LEAD_MEASURE]:.3f} | "
            f"{m['softmax_collapse']:.3f} | {m['grad_alignment']:.3f} |"
        )
    # ID from every evaluation; the measure from the checkpoints only, so it crossed at or before
    # the step found, and the lead is at least the one printed
    ms = first_step(rows, LEAD_MEASURE, LEAD_THRESHOLD)
    for level in ID_LEVELS:
        crossed = first_step(run.metrics, "test_id_acc", level)
        lead = "-" if ms is None or crossed is None else f">= {crossed - ms:,} steps"
        print(
            f"ID >= {level} at step {crossed}; measure >= {LEAD_THRESHOLD} by checkpoint {ms}: "
            f"lead {lead}"
        )
    print(f"(checkpoints: {run.steps})")


def cost(repeats: int, device: str) -> None:
    """Seconds per evaluation without and with the progress measures, and their ratio."""
    import torch

    torch.set_num_threads(1)
    from grok_circuits import build_model, make_task, model_config
    from grok_circuits.training.loop import evaluate
    from grok_circuits.training.progress_measures import ProgressMeasures

    task = make_task("composition", preset="tutorial")
    model = build_model(model_config(task, "tutorial"), seed=0, device=device)
    probes = {k: v.to(device) for k, v in task.probes(1000).items()}  # the preset's eval_size
    measures = ProgressMeasures(task, device=device)
    evaluate(model, probes), measures(model)  # warm-up

    def seconds(fn) -> float:
        best = float("inf")
        for _ in range(repeats):
            t0 = time.perf_counter()
            fn()
            if device == "cuda":
                torch.cuda.synchronize()
            best = min(best, time.perf_counter() - t0)
        return best

    from grok_circuits.training.loop import answer_loss, make_optimizer

    cfg = trial_config(BASELINE, 0, device, 1)
    optimizer = make_optimizer(model, cfg)
    batch = task.train.select(slice(0, cfg.batch_size)).to(device)

    def step() -> None:
        optimizer.zero_grad(set_to_none=True)
        answer_loss(model, batch).backward()
        optimizer.step()

    base = seconds(lambda: evaluate(model, probes))
    extra = seconds(lambda: measures(model))
    per_step = seconds(step)
    between = cfg.eval_every * per_step + base
    print(
        f"{device}: evaluation (loss and accuracy on every probe) {base * 1e3:.1f} ms, progress "
        f"measures {extra * 1e3:.1f} ms: an evaluation costs {(base + extra) / base:.2f}x what "
        f"it did; with a training step at {per_step * 1e3:.1f} ms and an evaluation every "
        f"{cfg.eval_every} steps, training takes {(between + extra) / between:.3f}x as long "
        f"(best of {repeats} each)"
    )


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--configs", nargs="+", default=list(CONFIGS), choices=list(CONFIGS))
    p.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    p.add_argument("--max-steps", type=int, default=3000)
    p.add_argument("--device", default="cpu")
    p.add_argument("--jobs", type=int, default=1, help="trials in parallel processes")
    p.add_argument("--no-circuit", action="store_true", help="skip find_circuit")
    p.add_argument("--out", type=Path, default=Path("."), help="folder for the CSV and JSON")
    p.add_argument("--summarize", type=Path, help="only print the table of a saved JSON")
    p.add_argument("--shipped", help="lead time of the measure on this run's checkpoints")
    p.add_argument("--cost", action="store_true", help="time the measures against evaluation")
    args = p.parse_args()

    if args.shipped:
        shipped_lead(args.shipped)
        return 0
    if args.cost:
        cost(20, args.device)
        return 0
    if args.summarize:
        saved = json.loads(args.summarize.read_text())
        add_jaccard(saved["rows"])
        print(summarize(saved["rows"], saved["max_steps"]))
        return 0

    args.out.mkdir(parents=True, exist_ok=True)
    csv_path, json_path = args.out / "accelerators.csv", args.out / "accelerators.json"
    # seed-major order: if time runs out, every configuration has its first seeds
    todo = [(c, s) for s in args.seeds for c in args.configs]
    rows: list[dict] = []
    t0 = time.perf_counter()
    with open(csv_path, "w", newline="") as f:
        writer = csv.DictWriter(f, CSV_FIELDS, extrasaction="ignore")
        writer.writeheader()
        with ProcessPoolExecutor(args.jobs, mp_context=get_context("spawn")) as pool:
            futures = {
                pool.submit(run_trial, c, s, args.device, args.max_steps, not args.no_circuit): (
                    c,
                    s,
                )
                for c, s in todo
            }
            for fut in as_completed(futures):
                c, s = futures[fut]
                try:
                    row = fut.result()
                except Exception as err:  # one failed trial must not lose the others
                    print(f"{c} seed {s} failed: {err!r}", file=sys.stderr)
                    continue
                rows.append(row)
                add_jaccard(rows)
                writer.writerow(row)
                f.flush()
                json_path.write_text(
                    json.dumps({"max_steps": args.max_steps, "rows": rows}, default=str)
                )
                print(
                    f"[{time.perf_counter() - t0:.0f}s] {c} seed {s}: memorized at "
                    f"{row['mem_step']}, grokked at {row['grok_step']}, last step "
                    f"{row['last_step']} ({row['last_s']:.0f}s)",
                    flush=True,
                )
    add_jaccard(rows)
    json_path.write_text(json.dumps({"max_steps": args.max_steps, "rows": rows}, default=str))
    print(
        f"\n{len(rows)} trials on {args.device}, {args.jobs} in parallel, max {args.max_steps} "
        f"steps, {time.perf_counter() - t0:.0f}s\n"
    )
    print(summarize(rows, args.max_steps))
    return 0


if __name__ == "__main__":
    os.environ.setdefault("PYTHONUNBUFFERED", "1")
    sys.exit(main())
