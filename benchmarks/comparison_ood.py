"""OOD comparison: how far each comparison setting gets, and where it fails.

    python benchmarks/comparison_ood.py                    # the former preset and two contrasts
    python benchmarks/comparison_ood.py --configs preset --max-steps 8000   # today's preset
    python benchmarks/comparison_ood.py --configs 10-values-phi-7.2 --max-steps 4000
    python benchmarks/comparison_ood.py --list

For each configuration (a row of the comparison tables in ``benchmarks/README.md``) it trains
with ``grok_circuits.train`` and prints the first step with train >= 0.99, ID >= 0.95 and OOD
>= 0.9 (or that it was not reached), the accuracies at the last step and the best OOD accuracy
of any evaluation. Then, at the last step, the ID and OOD accuracy per value gap
``|value1 - value2|`` (:func:`grok_circuits.accuracy_by`): a model that reads the two values
precisely is right even when they are one apart, a model that reads them roughly only when
they are far apart.

The baseline is the best constant answer (always ``<``, always ``=`` or always ``>``, whichever
is most often right) on the same ``test_ood`` split, measured in the same run; the ratio
printed is OOD accuracy / baseline. Configurations run one after another; ``--threads`` sets
torch's threads (steps do not depend on it, seconds do).
"""

import argparse
import sys
import tempfile
import time
from pathlib import Path

import torch

from grok_circuits import accuracy_by, make_task, model_config, train, train_config
from grok_circuits.tasks import value_gap

sys.path.insert(0, str(Path(__file__).parent))
from time_to_grok import OOD_TARGET, first_row, stop_at_grok  # noqa: E402

#: name -> (task parameters over the tutorial preset, TrainConfig fields over the tutorial
#: comparison preset, HookedTransformerConfig overrides over the "tutorial" model size). Every
#: configuration but "preset" was measured before the preset took phi 3.6, larger initial
#: weights and bf16 autocast: they pin TransformerLens' default initial scale
#: (``initializer_range=-1``, i.e. 0.8 / sqrt(d_model)) and float32, so they train as they did.
_OLD_INIT = {"initializer_range": -1.0}
_D64_ROTARY = {**_OLD_INIT, "d_model": 64, "d_head": 16, "positional_embedding_type": "rotary"}
_FIVE_VALUES = {"n_entities": 200, "n_values": 5, "phi": 7.2}
_F32 = {"precision": "float32"}
CONFIGS: dict[str, tuple[dict, dict, dict]] = {
    "preset": ({}, {}, {}),
    # The preset before its memorizing stage: phi 7.2, the default initial scale, float32.
    "5-values-phi-7.2": (_FIVE_VALUES, _F32, _OLD_INIT),
    # The comparison preset before 5 values: ID at once, OOD near chance.
    "10-values-phi-20": (
        {"n_entities": 100, "n_values": 10, "phi": 20.0},
        {**_F32, "lr": 2e-3, "weight_decay": 0.5},
        _OLD_INIT,
    ),
    # The best 10-value setting of the second round: OOD plateaus near 0.75.
    "10-values-phi-7.2": (
        {"n_entities": 200, "n_values": 10, "phi": 7.2},
        {**_F32, "lr": 2e-3, "weight_decay": 1.0},
        _D64_ROTARY,
    ),
    # The 5-value task at the composition learning rate: OOD passes 0.9 sooner, then swings.
    "5-values-lr-2e-3": (_FIVE_VALUES, {**_F32, "lr": 2e-3, "weight_decay": 1.0}, _OLD_INIT),
    "5-values-d64-rotary": (_FIVE_VALUES, {**_F32, "lr": 2e-3, "weight_decay": 1.0}, _D64_ROTARY),
}
DEFAULT = ["5-values-phi-7.2", "10-values-phi-20", "10-values-phi-7.2"]


def best_constant(split, vocab) -> float:
    """Accuracy of always answering the one relation (<, = or >) that is most often right."""
    relation = split.answers - vocab.label_offset - 3 * split.meta["attribute"]
    return max(float((relation == r).float().mean()) for r in range(3))


def measure(name: str, max_steps: int) -> None:
    task_over, train_over, model_over = CONFIGS[name]
    task = make_task("comparison", preset="tutorial", **task_over)
    target = OOD_TARGET["comparison"]
    cfg = stop_at_grok(train_config("comparison"), target, max_steps=max_steps, **train_over)
    p = task.params
    print(
        f"\n== {name}: {p.n_entities} entities / {p.n_attributes} attributes / {p.n_values} "
        f"values, phi {p.phi}; lr {cfg.lr}, weight decay {cfg.weight_decay}; model "
        f"{model_over or cfg.model_size}",
        flush=True,
    )
    with tempfile.TemporaryDirectory() as tmp:
        t0 = time.perf_counter()
        mc = model_config(task, cfg.model_size, **model_over)
        run = train(task, cfg, out=tmp, model_cfg=mc, progress=False)
        wall = time.perf_counter() - t0
        step, seconds = first_row(run, ood_target=target)
        last = run.metrics[-1]
        best_ood = max(row["test_ood_acc"] for row in run.metrics)
        model = run.model()
        by_gap = {s: accuracy_by(model, task.splits[s], value_gap) for s in ("test_id", "test_ood")}
    chance = best_constant(task.splits["test_ood"], task.vocab)
    reached = f"step {step} ({seconds:.0f} s)" if step else f"not reached in {run.last_step} steps"
    print(f"train >= 0.99, ID >= 0.95 and OOD >= 0.9: {reached}")
    print(f"ran {run.last_step} steps in {wall:.0f} s")
    print(
        f"last step: train {last['train_inferred_acc']:.3f}  ID {last['test_id_acc']:.3f}  "
        f"OOD {last['test_ood_acc']:.3f} (best {best_ood:.3f})  atomic ID "
        f"{last['id_atomic_acc']:.3f} OOD {last['ood_atomic_acc']:.3f}"
    )
    print(
        f"baseline (best constant answer on test_ood): {chance:.3f}; "
        f"OOD / baseline: {last['test_ood_acc'] / chance:.2f}x"
    )
    print("accuracy by value gap at the last step (n = OOD examples):")
    ood = by_gap["test_ood"]
    ids = dict(zip(by_gap["test_id"].groups, by_gap["test_id"].accuracy))
    for gap, acc, n in zip(ood.groups, ood.accuracy, ood.counts):
        print(f"  gap {gap}: ID {ids.get(gap, float('nan')):.2f}  OOD {acc:.2f}  (n={n})")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--configs", nargs="+", default=DEFAULT, choices=sorted(CONFIGS))
    parser.add_argument("--max-steps", type=int, default=3000)
    parser.add_argument("--threads", type=int, default=2)
    parser.add_argument("--list", action="store_true", help="print the configurations and exit")
    args = parser.parse_args()
    if args.list:
        for name, spec in CONFIGS.items():
            print(f"{name}: task {spec[0]}, training {spec[1]}, model {spec[2]}")
        return
    torch.set_num_threads(args.threads)
    print(f"torch {torch.__version__}, {torch.get_num_threads()} threads, CPU")
    for name in args.configs:
        measure(name, args.max_steps)


if __name__ == "__main__":
    main()
