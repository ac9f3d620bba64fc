"""The package imports TransformerLens (seconds) only when a model is needed.

Each check runs in a fresh interpreter, since this one has imported everything already.
"""

import importlib
import os
import subprocess
import sys
import textwrap
from pathlib import Path

import pytest

import grok_circuits

ROOT = Path(__file__).resolve().parent.parent
SHIPPED_RUN = ROOT / "data" / "runs" / "composition"


def _run(code: str, cwd: Path = ROOT) -> str:
    done = subprocess.run(
        [sys.executable, "-c", textwrap.dedent(code)],
        cwd=cwd,
        capture_output=True,
        text=True,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
    )
    assert done.returncode == 0, done.stderr
    return done.stdout


def test_import_and_help_load_neither_torch_nor_transformer_lens():
    out = _run(
        """
        import sys
        import grok_circuits
        from grok_circuits.cli import build_parser
        build_parser().format_help()
        print(sorted(m for m in ("torch", "transformer_lens") if m in sys.modules))
        """
    )
    assert out.strip() == "[]"


def test_reading_a_run_does_not_load_transformer_lens():
    out = _run(
        f"""
        import sys
        from grok_circuits import load_run
        run = load_run({str(SHIPPED_RUN)!r})
        run.summary()
        print("transformer_lens" in sys.modules)
        """
    )
    assert out.strip() == "False"


def test_report_does_not_load_transformer_lens(tmp_path):
    out = _run(
        f"""
        import sys
        from grok_circuits.cli import main
        assert main(["report", {str(SHIPPED_RUN)!r}, "--out", {str(tmp_path)!r}]) == 0
        print("transformer_lens" in sys.modules)
        """
    )
    assert (tmp_path / "curves.png").is_file()
    assert out.strip().endswith("False")


def test_every_public_name_resolves_to_its_module():
    for name in grok_circuits.__all__:
        value = getattr(grok_circuits, name)
        assert value.__name__ == name
    assert set(grok_circuits.__all__) <= set(dir(grok_circuits))
    with pytest.raises(AttributeError, match="no attribute 'nope'"):
        grok_circuits.nope  # noqa: B018


def test_importing_every_module_keeps_the_functions_of_the_same_name():
    """``train`` and ``sweep`` are functions at the top level; no submodule of the package may
    share their names, or importing it would shadow them."""
    for module in ("training.loop", "sweeps"):
        importlib.import_module(f"grok_circuits.{module}")
    from grok_circuits import sweep, train

    assert callable(train) and callable(sweep)
    assert grok_circuits.train is train
