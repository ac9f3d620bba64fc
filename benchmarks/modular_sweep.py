"""The small sweep behind the modular tutorial preset: steps and seconds to grok per setting.

    python benchmarks/modular_sweep.py                 # every setting below, seed 0
    python benchmarks/modular_sweep.py --seeds 0 1 --only 2

Each setting trains the tutorial model (1 layer, d_model 64, 4 heads, d_mlp 256, ReLU, no
LayerNorm) on Nanda et al.'s prompt ``<a> <b> <=>`` of modular addition, full-batch with AdamW
(betas 0.9, 0.98, 10 warm-up steps, no clipping) on one thread, stopping at the first evaluation
(every 50 steps) with train >= 0.99 and test >= 0.95, or at the step budget. It prints the
memorizing step (train >= 0.99), the grokking step and the wall seconds to it.
Seconds compare only within one run.
"""

import argparse
import dataclasses
import sys
import tempfile
from pathlib import Path

import torch

from grok_circuits.tasks import make_task
from grok_circuits.training.loop import train
from grok_circuits.training.presets import train_config

sys.path.insert(0, str(Path(__file__).parent))  # run as a script: its sibling benchmark
from time_to_grok import first_row, stop_at_grok  # noqa: E402

#: (p, frac_train, lr, weight_decay)
SETTINGS = [
    (47, 0.5, 3e-3, 1.0),
    (47, 0.5, 1e-3, 1.0),
    (59, 0.4, 3e-3, 1.0),
    (47, 0.6, 3e-3, 1.0),
]


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--only", type=int, nargs="+", help="indices into SETTINGS")
    parser.add_argument("--max-steps", type=int, default=3000)
    args = parser.parse_args()
    torch.set_num_threads(1)
    base = train_config("modular", "tutorial")
    for i, (p, frac, lr, wd) in enumerate(SETTINGS):
        if args.only and i not in args.only:
            continue
        for seed in args.seeds:
            task = make_task(
                "modular", preset="tutorial", p=p, frac_train=frac, op_token=False, seed=seed
            )
            cfg = stop_at_grok(base, lr=lr, weight_decay=wd, seed=seed, max_steps=args.max_steps)
            cfg = dataclasses.replace(cfg, eval_every=50)
            with tempfile.TemporaryDirectory() as tmp:
                run = train(task, cfg, out=tmp, progress=False)
                step, seconds = first_row(run)
            print(
                f"[{i}] p={p:<4} frac={frac:<4} lr={lr:<6g} wd={wd:<4g} seed={seed}  "
                f"memorized {run.saturation_step!s:>5}  grokked {step!s:>5}  "
                f"seconds {seconds if seconds is not None else float('nan'):6.1f}  "
                f"(last step {run.last_step}, test {run.metrics[-1]['test_id_acc']:.3f})",
                flush=True,
            )


if __name__ == "__main__":
    main()
