"""The dev extra installs every tool the documentation tells a reader to run."""

import re
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

#: ``jupyter <subcommand>`` -> the distribution that provides it.
JUPYTER_SUBCOMMANDS = {"nbconvert": "nbconvert", "lab": "jupyterlab", "notebook": "notebook"}


def dev_requirements() -> set[str]:
    """The distributions the dev extra names (read from the text: tomllib needs Python 3.11)."""
    block = re.search(r"^dev = \[(.*?)^\]", (ROOT / "pyproject.toml").read_text(), re.M | re.S)
    return {m.lower() for m in re.findall(r'^\s*"([A-Za-z0-9_.-]+)', block[1], re.M)}


def test_the_jupyter_commands_of_the_docs_come_with_the_dev_extra():
    docs = [ROOT / "README.md", *sorted((ROOT / "tutorials").glob("*.md"))]
    used = {m for doc in docs for m in re.findall(r"\bjupyter (\w+)", doc.read_text())}
    assert "nbconvert" in used  # the tutorials' README says how to keep a run's outputs
    missing = {JUPYTER_SUBCOMMANDS[u] for u in used} - dev_requirements()
    assert not missing, f"the docs run jupyter {sorted(used)}; the dev extra lacks {missing}"
