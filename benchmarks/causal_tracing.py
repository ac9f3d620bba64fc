"""Causal tracing: grok_circuits' ``causal_trace`` against TransformerLens' patcher.

Both compute the same table: for every (layer, position) of the residual stream
(``resid_pre``), run the corrupt input with that state taken from the clean run, and record a
metric of the logits (here the mean logit difference between the clean and the corrupt answer).
TransformerLens' ``get_act_patch_resid_pre`` makes one full forward pass per (layer, position);
``causal_trace`` batches the patches, starts each patched pass at its layer and at the first
position it changes, and copies the runs a patch cannot change or turns into the other run
(see ``grok_circuits/analysis/patching/causal_trace.py``).

The work: a tutorial-size model (4 layers, d_model 128, 4 heads) on each tutorial task
(composition: 3 positions, vocab 123; comparison: 5 positions, vocab 253), 300 training
inferred queries corrupted the paper's way (one token swapped so that the answer changes), and
a worst case where every position of the corrupt prompt is random. TransformerLens is timed
with the clean-cache run it needs and under ``torch.no_grad`` (called plainly it would also
build autograd graphs); both are timed end to end, best of ``--repeats``. The numbers must
agree to 1e-5 (``torch.testing.assert_close``).

Run: ``python benchmarks/causal_tracing.py`` (under a minute on two CPU cores). Under
TransformerLens 4.x (``.venv-tl4/bin/python benchmarks/causal_tracing.py``) the model is a
``TransformerBridge``, which cannot start a pass mid-way, so only batching and copying remain.
"""

import argparse
import os
import time
import warnings

os.environ.setdefault("TQDM_DISABLE", "1")  # TransformerLens' patcher draws a progress bar

import torch  # noqa: E402
from transformer_lens import patching  # noqa: E402

from grok_circuits import backend  # noqa: E402
from grok_circuits.analysis import causal_trace, logit_difference, make_pairs  # noqa: E402
from grok_circuits.model import build_model, model_config  # noqa: E402
from grok_circuits.tasks import make_task  # noqa: E402

CASES = {"composition": ("h", "r1", "r2"), "comparison": ("attr", "e1", "e2")}


def best_time(repeats: int, fn, *args):
    """``fn(*args)`` and its fastest wall time over ``repeats`` calls."""
    times, out = [], None
    for _ in range(repeats):
        start = time.perf_counter()
        out = fn(*args)
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        times.append(time.perf_counter() - start)
    return out, min(times)


@torch.no_grad()
def transformer_lens_trace(model, clean, corrupt, metric):
    _, clean_cache = model.run_with_cache(clean)
    return patching.get_act_patch_resid_pre(model, corrupt, clean_cache, metric)


def our_trace(model, clean, corrupt, metric):
    return causal_trace(model, clean, corrupt, metric, direction="denoise")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--examples", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument(
        "--threads",
        type=int,
        default=1,
        help="torch intra-op threads for both (default 1: stable timings on a shared machine)",
    )
    parser.add_argument("--device", default="cpu", help="cpu (default), cuda, ...")
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    warnings.filterwarnings("ignore", category=DeprecationWarning)

    print(
        f"causal tracing of resid_pre (denoising), {args.examples} training inferred queries, "
        f"torch threads {torch.get_num_threads()}, device {device}, best of {args.repeats}; "
        f"TransformerLens {backend.TL_VERSION} ({backend.BACKEND})"
    )
    print(
        f"{'task':<16}{'corrupt input':<14}{'TL (s)':>8}{'ours (s)':>10}{'speed-up':>10}"
        f"{'max |diff|':>12}{'rows run, ours / TL':>22}"
    )
    total_tl = total_ours = 0.0
    for task_name, swaps in CASES.items():
        task = make_task(task_name, preset="tutorial")
        model = build_model(model_config(task, "tutorial"), seed=0, device=device).eval()
        cfg = model.cfg
        cases = {}
        for swap in swaps:
            cf = make_pairs(task, swap, n_examples=args.examples, seed=0).to(device)
            cases[f"swap {swap}"] = (cf.corrupt, cf)
        g = torch.Generator().manual_seed(0)
        noise = torch.randint(0, cfg.d_vocab, cf.clean.shape, generator=g).to(device)
        cases["all random"] = (noise, cf)
        n, n_pos = cf.clean.shape
        label = f"{task_name} ({n_pos})"
        for name, (corrupt, cf) in cases.items():
            metric = logit_difference(cf.answer_pos, cf.clean_answers, cf.corrupt_answers)
            work = (model, cf.clean, corrupt, metric)
            expected, t_tl = best_time(args.repeats, transformer_lens_trace, *work)
            trace, t_ours = best_time(args.repeats, our_trace, *work)
            scores, expected = trace.scores.cpu(), expected.cpu()
            diff = float((scores - expected).abs().max())
            # float32 kernels on a GPU may sum in another order than on the CPU
            atol = 1e-5 if device.type == "cpu" else 1e-4
            torch.testing.assert_close(scores, expected, atol=atol, rtol=0)
            total_tl, total_ours = total_tl + t_tl, total_ours + t_ours
            rows = f"{trace.patched_rows} / {cfg.n_layers * n_pos * n}"
            print(
                f"{label:<16}{name:<14}{t_tl:>8.3f}{t_ours:>10.3f}{t_tl / t_ours:>9.1f}x"
                f"{diff:>12.1e}{rows:>22}"
            )
    print(f"{'all':<30}{total_tl:>8.3f}{total_ours:>10.3f}{total_tl / total_ours:>9.1f}x")


if __name__ == "__main__":
    main()
