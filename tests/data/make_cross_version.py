"""Make the cross-version fixture: a tiny run trained under the installed TransformerLens.

    python tests/data/make_cross_version.py      # under 3.x writes tests/data/cross_version/tl3,
                                                 # under 4.x .../tl4

The run (tiny composition task and model, seed 0, 400 steps, checkpoints at 0 and 400 kept) and
``logits.safetensors``, the last checkpoint's logits on the test_id prompts as computed by the
TransformerLens that trained it. ``tests/test_backend.py`` loads each under the other version.
"""

import shutil
import sys
import tempfile
from pathlib import Path

import torch
from safetensors.torch import save_file

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from grok_circuits import backend, make_task, train  # noqa: E402
from grok_circuits.runs import export_run  # noqa: E402
from tests.conftest import TINY_COMPOSITION  # noqa: E402
from tests.helpers import tiny_train_config  # noqa: E402

#: The training config of the fixture, also what the test retrains to compare metrics.
STEPS = 400


def fixture_config():
    return tiny_train_config(max_steps=STEPS, eval_every=50, dense_until=0)


def main() -> None:
    out = Path(__file__).parent / "cross_version" / f"tl{backend.TL_MAJOR}"
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
    print(f"wrote {out} with TransformerLens {backend.TL_VERSION} ({backend.BACKEND})")


if __name__ == "__main__":
    main()
