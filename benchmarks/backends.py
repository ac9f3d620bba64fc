"""The two backends side by side: the same training run under TransformerLens 3.x
(``HookedTransformer``) and 4.x (``TransformerBridge``).

Trains the same run (tutorial composition task and preset, tutorial model, seed 0, ``--steps``
steps, one CPU thread) once in this environment and once in the other one (a subprocess in its
Python), then prints, from this process: the largest difference of every logged metric over all
evaluations (accuracies, losses, the rest), the largest difference of the final checkpoints'
logits on the test_id prompts (both loaded here, one of them made under the other version), and
each side's training time.

Run (with the suite's 4.x environment made by ``tests/run_both.sh``):
``.venv/bin/python benchmarks/backends.py --other .venv-tl4/bin/python``.
"""

import argparse
import json
import subprocess
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))


def train_here(out: str, steps: int) -> None:
    from grok_circuits import TrainConfig, backend, make_task, train
    from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED

    task = make_task("composition", preset="tutorial")
    cfg = TUTORIAL_AS_RECORDED.to_dict()  # the recipe its recorded figures were measured with
    cfg.update(max_steps=steps, threads=1, device="cpu", stop_id_acc=None)
    start = time.perf_counter()
    train(task, TrainConfig.from_dict(cfg), out=out, progress=False)
    seconds = time.perf_counter() - start
    Path(out, "timing.json").write_text(
        json.dumps({"seconds": seconds, "tl": backend.TL_VERSION, "backend": backend.BACKEND})
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--other", required=True, help="the other environment's python")
    parser.add_argument("--steps", type=int, default=400)
    parser.add_argument("--train-only", help=argparse.SUPPRESS)  # the subprocess' job
    args = parser.parse_args()
    if args.train_only:
        return train_here(args.train_only, args.steps)

    import torch

    from grok_circuits import load_run

    with tempfile.TemporaryDirectory() as tmp:
        runs = {"here": f"{tmp}/here", "other": f"{tmp}/other"}
        train_here(runs["here"], args.steps)
        subprocess.run(
            [args.other, __file__, "--other", args.other, "--steps", str(args.steps)]
            + ["--train-only", runs["other"]],
            check=True,
        )
        loaded = {k: load_run(v) for k, v in runs.items()}
        timing = {k: json.loads(Path(v, "timing.json").read_text()) for k, v in runs.items()}
        for k in runs:
            t = timing[k]
            print(f"{k:<6} TransformerLens {t['tl']} ({t['backend']}): {t['seconds']:.1f} s")
        ratio = timing["other"]["seconds"] / timing["here"]["seconds"]
        print(f"training time, other / here: {ratio:.2f}")
        worst: dict[str, float] = {}
        a, b = loaded["here"].metrics, loaded["other"].metrics
        assert [r["step"] for r in a] == [r["step"] for r in b]
        for ra, rb in zip(a, b):
            for key in ra:
                if key in ("time", "step"):
                    continue
                kind = "accuracy" if key.endswith("_acc") else "loss" if "loss" in key else key
                worst[kind] = max(worst.get(kind, 0.0), abs(ra[key] - rb[key]))
        print(f"{len(a)} evaluations over {args.steps} steps; largest difference, here vs other:")
        for kind, value in sorted(worst.items()):
            print(f"  {kind:<28}{value:.2e}")
        step = loaded["here"].steps[-1]
        tokens = loaded["here"].task.splits["test_id"].tokens
        with torch.no_grad():
            logits = [loaded[k].model(step, device="cpu")(tokens) for k in runs]
        print(
            f"final checkpoint (step {step}), both loaded here: largest |logit difference| "
            f"{float((logits[0] - logits[1]).abs().max()):.2e}"
        )


if __name__ == "__main__":
    main()
