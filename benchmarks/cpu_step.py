"""The tutorial composition training step on the CPU: what bf16 autocast and the fused LayerNorm
each save, measured against each other in one run.

    python benchmarks/cpu_step.py                      # 4 variants, 5 rounds of 40 steps
    python benchmarks/cpu_step.py --rounds 3 --steps 20 --threads 1

Each variant is ``train()``'s own step (:func:`grok_circuits.training.loop.train_step`, timed by
:func:`grok_circuits.training.throughput.training_throughput`: batch, learning rate, forward,
loss, backward, clipping, AdamW) on the tutorial composition task and model (4 layers, d_model
128, batch 512) at the main job's preset, changing only ``precision`` and
``fused_layer_norm``:

- ``float32``: TransformerLens' LayerNorm, float32 (the main job's step before bf16);
- ``bf16``: bf16 autocast (the main job's step before the fused LayerNorm);
- ``fused-ln``: float32 with :func:`grok_circuits.backend.fused_layer_norm`;
- ``bf16+fused-ln``: both (the main job's step now, where the CPU has bf16 in hardware).

The variants take turns, round after round (``--rounds``), so that a change in the machine's
load falls on all of them alike; each round times ``--steps`` steps after ``--warmup`` untimed
ones. It prints each variant's median milliseconds per step over the rounds, its range, and the
ratio of ``float32``'s and of ``bf16``'s median to it, and the median seconds outside the timed
steps (building the model and the warm-up steps, which include compiling). ``--variants bf16
bf16+fused-ln bf16+compile`` adds ``torch.compile``.
"""

import argparse
import dataclasses
import statistics
import sys
import time

import torch

from grok_circuits.tasks import make_task
from grok_circuits.training.presets import train_config
from grok_circuits.training.throughput import training_throughput

VARIANTS = {
    "float32": dict(precision="float32", fused_layer_norm=False),
    "bf16": dict(precision="bf16", fused_layer_norm=False),
    "fused-ln": dict(precision="float32", fused_layer_norm=True),
    "bf16+fused-ln": dict(precision="bf16", fused_layer_norm=True),
    # on request (--variants): torch.compile, whose compiling falls in the untimed warm-up (it
    # fuses on its own, and TrainConfig refuses it together with fused_layer_norm)
    "bf16+compile": dict(precision="bf16", fused_layer_norm=False, compile=True),
}
DEFAULT = ["float32", "bf16", "fused-ln", "bf16+fused-ln"]


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--rounds", type=int, default=5, help="turns of every variant")
    parser.add_argument("--steps", type=int, default=40, help="timed steps per variant and round")
    parser.add_argument("--warmup", type=int, default=5, help="untimed steps before them")
    parser.add_argument("--threads", type=int, help="torch threads (default: as train chooses)")
    parser.add_argument("--variants", nargs="+", choices=list(VARIANTS), default=DEFAULT)
    args = parser.parse_args()
    task = make_task("composition", preset="tutorial")
    base = dataclasses.replace(
        train_config("composition", "tutorial"), device="cpu", threads=args.threads
    )
    if "bf16" in " ".join(args.variants) and not torch.backends.mkldnn.is_available():
        print("note: this torch build has no oneDNN; bf16 runs emulated")
    print(
        f"torch {torch.__version__}, CPU, threads: {args.threads or 'chosen by train'}; "
        f"tutorial composition, batch {base.batch_size}; {args.rounds} rounds of {args.steps} "
        f"steps after {args.warmup}"
    )
    ms: dict[str, list[float]] = {name: [] for name in args.variants}
    setup: dict[str, list[float]] = {name: [] for name in args.variants}
    for r in range(args.rounds):
        for name in args.variants:
            cfg = dataclasses.replace(base, **VARIANTS[name])
            start = time.perf_counter()
            per_s = training_throughput(task, cfg, steps=args.steps, warmup=args.warmup)
            ms[name].append(1000.0 / per_s)
            setup[name].append(time.perf_counter() - start - args.steps / per_s)
        print(
            f"round {r + 1}: " + ", ".join(f"{n} {ms[n][-1]:.1f}" for n in args.variants) + " ms",
            flush=True,
        )
    median = {name: statistics.median(v) for name, v in ms.items()}
    print(
        f"\n{'variant':<22}{'ms/step':>9}{'range':>15}{'float32 / it':>14}{'bf16 / it':>11}"
        f"{'warm-up s':>11}"
    )
    for name, v in ms.items():
        ratios = [
            f"{median[ref] / median[name]:.2f}x" if ref in median else "-"
            for ref in ("float32", "bf16")
        ]
        print(
            f"{name:<22}{median[name]:>9.1f}{f'{min(v):.1f}-{max(v):.1f}':>15}"
            f"{ratios[0]:>14}{ratios[1]:>11}{statistics.median(setup[name]):>11.1f}"
        )
    return 0


if __name__ == "__main__":
    sys.exit(main())
