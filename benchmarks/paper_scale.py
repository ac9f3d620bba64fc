"""The paper-scale GPU path, measured: training speed and memory of the paper preset, what bf16 and
``torch.compile`` change, and the analyses at paper scale against TransformerLens' patcher.

    python benchmarks/paper_scale.py                  # on a GPU: every part
    python benchmarks/paper_scale.py --device cpu     # a few steps and 20 examples; says so

Parts, each printed as it is measured:

1. **Training speed** of the paper preset (the composition task's ``"paper"`` preset: 2,000
   entities, phi 7.2, the 8-layer d_model 768 model, AdamW batch 512): steps per second of
   ``train()``'s own step alone (``grok_circuits.training.loop.train_step``: batch, learning rate,
   forward, loss, backward, gradient hooks, clipping, AdamW;
   ``grok_circuits.training.throughput``), timed after
   ``--warmup`` untimed steps (which include compiling), for float32, bf16 autocast, compile and
   both; the peak memory (CUDA: ``torch.cuda.max_memory_allocated``; CPU: the process's peak
   RSS); the hours to the paper's 1.5M steps at that speed (evaluation and checkpoints not
   counted). Then the batch that fills the GPU
   (``grok_circuits.training.throughput.batch_that_fills``: doubling
   the batch from 512 until examples per second rise by less than 10%).
2. **Same metrics**: ``train()`` on the tutorial composition task (tutorial model on CUDA, tiny on
   the CPU; 200 steps, evaluation every 20) with each option, against the float32 run: the
   largest difference of any accuracy and the largest relative difference of any loss over all
   evaluations.
3. **Analyses at paper scale** (8 layers, 300 training inferred queries, an untrained paper-size
   model: the work does not depend on the weights): ``trace_bridge`` against TransformerLens
   doing the same work (a cached clean run for the logit lens, and ``get_act_patch_resid_pre``),
   and ``find_circuit(method="patching")`` over the three swaps against TransformerLens'
   ``get_act_patch_resid_pre``, ``get_act_patch_attn_head_out_all_pos`` and
   ``get_act_patch_mlp_out`` on the same pairs. Both timed end to end, best of ``--repeats``.
"""

import argparse
import dataclasses
import os
import sys
import tempfile
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens' patcher draws a progress bar

import torch  # noqa: E402

from grok_circuits.model import build_model, model_config, resolve_device  # noqa: E402
from grok_circuits.tasks import make_task  # noqa: E402
from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED  # noqa: E402
from grok_circuits.training.presets import train_config  # noqa: E402
from grok_circuits.training.throughput import (  # noqa: E402
    batch_that_fills,
    peak_memory_gib,
    synchronize,
    training_throughput,
)

PAPER_STEPS = 1_500_000
VARIANTS = {
    "float32": dict(precision="float32", compile=False),
    "bf16": dict(precision="bf16", compile=False),
    "compile": dict(precision="float32", compile=True),
    "bf16+compile": dict(precision="bf16", compile=True),
}


def part_speed(args, device, variants) -> None:
    task = make_task("composition", preset="paper")
    cfg = dataclasses.replace(train_config("composition", "paper"), device=str(device))
    print(
        f"\n1. training speed, paper preset (composition, {len(task.train)} training rows, "
        f"8 layers, d_model 768, batch {cfg.batch_size}), {args.steps} steps timed after "
        f"{args.warmup}",
        flush=True,
    )
    print(
        f"{'variant':<14}{'batch':>6}{'steps/s':>10}{'examples/s':>12}{'peak GiB':>10}"
        f"{'hours to 1.5M':>15}{'vs float32':>12}"
    )
    base = None
    for name in variants:
        c = dataclasses.replace(cfg, **VARIANTS[name])
        rate = training_throughput(task, c, steps=args.steps, warmup=args.warmup)
        base = base or rate
        print(
            f"{name:<14}{c.batch_size:>6}{rate:>10.2f}{rate * c.batch_size:>12.0f}"
            f"{peak_memory_gib(device):>10.2f}{PAPER_STEPS / rate / 3600:>15.1f}"
            f"{rate / base:>11.2f}x",
            flush=True,
        )
    if args.max_batch:
        name = "bf16" if device.type == "cuda" else "float32"
        print(f"\nlarger batches ({name}; doubling until examples/s gain < 10%):", flush=True)
        search = batch_that_fills(
            task,
            dataclasses.replace(cfg, **VARIANTS[name]),
            max_batch=args.max_batch,
            steps=max(args.steps // 2, 1),
            warmup=args.warmup,
            progress=False,
        )
        print(search, flush=True)


def part_same_metrics(args, device, variants) -> None:
    import contextlib
    import io

    from grok_circuits.training.loop import train

    task = make_task("composition", preset="tutorial")
    cfg = dataclasses.replace(
        TUTORIAL_AS_RECORDED,  # float32, TransformerLens' LayerNorm: the baseline
        max_steps=args.check_steps,
        eval_every=20,
        model_size=args.check_size,
        stop_id_acc=None,
        device=str(device),
        threads=1 if device.type == "cpu" else None,
    )
    print(
        f"\n2. same metrics: tutorial composition, {args.check_size} model, {args.check_steps} "
        "steps, seed 0, against float32",
        flush=True,
    )
    print(
        f"{'variant':<14}{'seconds':>9}{'max |d acc|':>13}{'max rel d loss':>16}"
        f"{'final id_acc':>14}"
    )
    runs = {}
    for name in variants:
        with tempfile.TemporaryDirectory() as tmp, contextlib.redirect_stdout(io.StringIO()):
            start = time.perf_counter()
            run = train(task, dataclasses.replace(cfg, **VARIANTS[name]), out=tmp, progress=False)
            seconds = time.perf_counter() - start
            runs[name] = run.metrics
        base = runs["float32"]
        d_acc = max(
            abs(a[k] - b[k]) for a, b in zip(runs[name], base) for k in a if k.endswith("_acc")
        )
        d_loss = max(
            abs(a[k] - b[k]) / max(abs(b[k]), 1e-12)
            for a, b in zip(runs[name], base)
            for k in a
            if k.endswith("_loss")
        )
        print(
            f"{name:<14}{seconds:>9.1f}{d_acc:>13.4f}{d_loss:>16.4f}"
            f"{runs[name][-1]['test_id_acc']:>14.3f}",
            flush=True,
        )


def best_time(repeats: int, device, fn, *args):
    times, out = [], None
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        out = fn(*args)
        synchronize(device)
        times.append(time.perf_counter() - start)
    return out, min(times)


@torch.no_grad()
def tl_bridge(model, pairs):
    """TransformerLens doing trace_bridge's work: the logit lens of every residual state of the
    clean run, and the resid_pre patching table."""
    from transformer_lens import patching

    from grok_circuits.analysis import logit_difference

    metric = logit_difference(pairs.answer_pos, pairs.clean_answers, pairs.corrupt_answers)
    _, cache = model.run_with_cache(pairs.clean)
    lens = cache.accumulated_resid(apply_ln=True) @ model.W_U
    table = patching.get_act_patch_resid_pre(model, pairs.corrupt, cache, metric)
    return lens, table


@torch.no_grad()
def tl_circuit(model, pair_list):
    """TransformerLens doing find_circuit's patching: resid_pre per (layer, position), each head's
    output at all positions, mlp_out per (layer, position), for each swap."""
    from transformer_lens import patching

    from grok_circuits.analysis import logit_difference

    out = []
    for p in pair_list:
        metric = logit_difference(p.answer_pos, p.clean_answers, p.corrupt_answers)
        _, cache = model.run_with_cache(p.clean)
        out.append(
            (
                patching.get_act_patch_resid_pre(model, p.corrupt, cache, metric),
                patching.get_act_patch_attn_head_out_all_pos(model, p.corrupt, cache, metric),
                patching.get_act_patch_mlp_out(model, p.corrupt, cache, metric),
            )
        )
    return out


def part_analyses(args, device) -> None:
    from grok_circuits.analysis import find_circuit, make_pairs, trace_bridge

    task = make_task("composition", preset="paper")
    model = build_model(model_config(task, "paper"), seed=0, device=device).eval()
    swaps = ("h", "r1", "r2")
    pair_list = [make_pairs(task, s, n_examples=args.examples, seed=0).to(device) for s in swaps]
    print(
        f"\n3. analyses at paper scale: 8 layers, d_model 768, {args.examples} training inferred "
        f"queries, best of {args.repeats}",
        flush=True,
    )
    print(f"{'analysis':<34}{'TL (s)':>9}{'ours (s)':>10}{'speed-up':>10}")
    _, t_ours = best_time(
        args.repeats, device, lambda: trace_bridge(model, pair_list[0], n_examples=args.examples)
    )
    _, t_tl = best_time(args.repeats, device, tl_bridge, model, pair_list[0])
    print(
        f"{'trace_bridge (swap h)':<34}{t_tl:>9.3f}{t_ours:>10.3f}{t_tl / t_ours:>9.1f}x",
        flush=True,
    )
    _, t_ours = best_time(
        args.repeats, device, lambda: find_circuit(model, pair_list, top_k=6, metric="strength")
    )
    _, t_tl = best_time(args.repeats, device, tl_circuit, model, pair_list)
    print(
        f"{'find_circuit (patching, 3 swaps)':<34}{t_tl:>9.3f}{t_ours:>10.3f}"
        f"{t_tl / t_ours:>9.1f}x",
        flush=True,
    )


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--device", default="auto")
    parser.add_argument("--steps", type=int, help="timed steps (default: 50 on CUDA, 3 on CPU)")
    parser.add_argument("--warmup", type=int, help="untimed steps first (default 10 / 1)")
    parser.add_argument(
        "--max-batch",
        type=int,
        help="largest batch the search for the batch that fills the GPU tries (default 16384 "
        "on CUDA; 0, no search, on the CPU)",
    )
    parser.add_argument(
        "--variants", nargs="*", choices=list(VARIANTS), help="default: all on CUDA, float32 on CPU"
    )
    parser.add_argument("--check-steps", type=int, default=200, help="steps of part 2")
    parser.add_argument("--check-size", help="model of part 2 (tutorial on CUDA, tiny on CPU)")
    parser.add_argument("--examples", type=int, help="queries of part 3 (300 on CUDA, 20 on CPU)")
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--parts", type=int, nargs="*", default=[1, 2, 3])
    args = parser.parse_args()
    warnings.filterwarnings("ignore")
    device = resolve_device(args.device)
    gpu = device.type == "cuda"
    args.steps = args.steps or (50 if gpu else 3)
    args.warmup = args.warmup if args.warmup is not None else (10 if gpu else 1)
    args.max_batch = args.max_batch if args.max_batch is not None else (16384 if gpu else 0)
    args.examples = args.examples or (300 if gpu else 20)
    args.check_size = args.check_size or ("tutorial" if gpu else "tiny")
    variants = args.variants or (list(VARIANTS) if gpu else ["float32"])
    if "float32" not in variants:
        variants = ["float32", *variants]
    name = torch.cuda.get_device_name(device) if gpu else f"CPU, {torch.get_num_threads()} threads"
    print(f"device: {device} ({name}), torch {torch.__version__}")
    if not gpu:
        print(
            f"on the CPU: {args.steps} timed steps, {args.examples} examples, float32 only unless "
            "--variants; the figures that matter are the GPU's"
        )
    if 1 in args.parts:
        part_speed(args, device, variants)
    if 3 in args.parts:
        part_analyses(args, device)
    if 2 in args.parts:
        part_same_metrics(args, device, variants)


if __name__ == "__main__":
    sys.exit(main())
