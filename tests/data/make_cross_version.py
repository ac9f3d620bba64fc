"""Make the cross-version fixture: a tiny run trained under the installed TransformerLens.

    python tests/data/make_cross_version.py      # under 3.x writes tests/data/cross_version/tl3,
                                                 # under 4.x .../tl4
    python tests/data/make_cross_version.py --edges-only   # only edges.safetensors

The run (tiny composition task and model, seed 0, 400 steps, checkpoints at 0 and 400 kept) and
``logits.safetensors``, the last checkpoint's logits on the test_id prompts as computed by the
TransformerLens that trained it, and ``edges.safetensors``, that checkpoint's edge scores
(EAP-IG) and faithfulness as that TransformerLens computes them (3.x through its own per-head
q/k/v inputs, 4.x through ``backend.split_qkv_hooks``). ``tests/backend/test_backend.py`` loads each
under the other version.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grok_circuits import (  # noqa: E402
    backend,
    edge_attribution,
    faithfulness,
    load_run,
    make_pairs,
    make_task,
    train,
)
from grok_circuits.runs.run import export_run  # noqa: E402
from tests.conftest import TINY_COMPOSITION  # noqa: E402
from tests.helpers import tiny_train_config  # noqa: E402

#: The training config of the fixture, also what the test retrains to compare metrics.
STEPS = 400

#: The fixture folder holding the run made under each backend.
FOLDERS = {"HookedTransformer": "tl3", "TransformerBridge": "tl4"}


def fixture_config():
    return tiny_train_config(max_steps=STEPS, eval_every=50, dense_until=0)


def edge_reference(model, task) -> dict[str, torch.Tensor]:
    """What ``edges.safetensors`` holds: EAP-IG scores on 32 swap-h pairs, and faithfulness of
    the top 10 and 40 edges against 3 random sets each (corrupt ablation)."""
    pairs = make_pairs(task, "h", n_examples=32, seed=0)
    scores = edge_attribution(model, pairs, method="eap-ig", ig_steps=3)
    f = faithfulness(model, pairs, scores, sizes=[10, 40], n_random=3)
    return {
        "raw": scores.raw,
        "faithfulness": f.faithfulness,
        "completeness": f.completeness,
        "random_faithfulness": f.random_faithfulness,
    }


def write_edge_reference(out: Path, model, task) -> None:
    ref = edge_reference(model, task)
    save_file({k: v.contiguous() for k, v in ref.items()}, str(out / "edges.safetensors"))


def main() -> None:
    out = Path(__file__).parent / "cross_version" / FOLDERS[backend.BACKEND]
    if "--edges-only" in sys.argv:
        run = load_run(out)
        write_edge_reference(out, run.model(STEPS, device="cpu"), run.task)
        print(f"wrote {out / 'edges.safetensors'} with TransformerLens {backend.TL_VERSION}")
        return
    task = make_task("composition", preset=None, **TINY_COMPOSITION)
    with tempfile.TemporaryDirectory() as tmp:
        run = train(task, fixture_config(), out=Path(tmp) / "run", progress=False)
        if out.exists():
            shutil.rmtree(out)
        run = export_run(run, out, steps=[0, STEPS])
    model = run.model(STEPS, device="cpu")
    with torch.no_grad():
        logits = model(run.task.splits["test_id"].tokens)
    save_file({"logits": logits.contiguous()}, str(out / "logits.safetensors"))
    write_edge_reference(out, model, run.task)
    print(f"wrote {out} with TransformerLens {backend.TL_VERSION} ({backend.BACKEND})")


if __name__ == "__main__":
    main()
