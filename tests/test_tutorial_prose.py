"""The tutorials' prose quotes only numbers that their code prints.

A markdown cell that says "ID accuracy reaches 0.93" goes stale the day the run is retrained,
and nothing else would notice. The rule: a number that a code cell computes is printed by that
code, and the prose either quotes a printed number or is phrased so that it stays true.

This test reads every notebook as nbmake executed it in the same test run (executing it itself
when nbmake has not, e.g. when the test runs alone), collects every number that its code cells
print or set (a parameter written in the code, such as ``n_examples=300``, is a fact of the
notebook, not a measurement), and checks that each number in its markdown is one of them, at
the precision the prose gives it: "45%" is supported by a printed 0.448, "0.70" by 0.7, "1,500"
only by 1500. What the check leaves out is listed below, each with its reason.
"""

import re
from pathlib import Path

import nbformat
import pytest
from nbclient import NotebookClient

from tests.conftest import EXECUTED_NOTEBOOKS

TUTORIALS = Path(__file__).resolve().parent.parent / "tutorials"
NOTEBOOKS = sorted(TUTORIALS.glob("*.ipynb"))

#: Text removed from the prose before its numbers are read: numbers that are names, not
#: measurements.
NOT_MEASUREMENTS = {
    r"^#+ \d+ ·": "the notebook's own number, in its title",
    r"\bnotebooks? \d+(?:\s*(?:-|,|and)\s*\d+)*": "references to other notebooks",
    r"(?:NeurIPS|et al\.) \(?(?:19|20)\d\d\b": "publication years of cited papers",
    r"\bGPT-2\b": "a model's name",
    r"\bsection \d+(?:\.\d+)*": "a section of the paper",
    r"https?://\S+": "links",
}

#: Numbers quoted from publications: no code here computes them.
QUOTED = {
    "01_grokking_a_two_hop_reasoner": {"50x": "the paper's gap from memorizing to grokking"},
    "05_circuit_reuse": {
        "78%": "Merullo et al.'s head overlap in GPT-2",
        "144": "GPT-2 small's number of attention heads (12 x 12)",
    },
}

#: Bare integers below this are structure, not results: layer, block, head and hop indices, the
#: handful of layers and heads of a tutorial model. Every notebook prints such integers (in its
#: tables' row labels and counts), so checking them would be a check that cannot fail.
SMALL_INTEGER = 10

_NUMBER = re.compile(
    r"(?<![\w.,])(?P<num>\d{1,3}(?:,\d{3})+|\d+(?:\.\d+)?)(?P<unit>\s?%|x\b)?(?![\w])"
)


def numbers(text: str) -> list[tuple[str, float, int, str]]:
    """Every number in ``text`` as (as written, value, decimals, unit): a percentage becomes
    a fraction with two more decimals, so that "45%" and "0.45" are the same number."""
    found = []
    for m in _NUMBER.finditer(text):
        digits = m["num"].replace(",", "")
        value = float(digits)
        decimals = len(digits.partition(".")[2])
        unit = (m["unit"] or "").strip()
        if unit == "%":
            value, decimals = value / 100, decimals + 2
        found.append((m.group(0), value, decimals, unit))
    return found


def _strip_prose(text: str) -> str:
    for pattern in NOT_MEASUREMENTS:
        text = re.sub(pattern, " ", text, flags=re.MULTILINE)
    return text


def unsupported(prose: str, printed: str, quoted: dict[str, str] | None = None) -> list[str]:
    """The numbers of ``prose`` that no number of ``printed`` matches at the prose's
    precision, leaving out names (:data:`NOT_MEASUREMENTS`), small bare integers and
    ``quoted``."""
    quoted = quoted or {}
    support = [value for _, value, _, _ in numbers(printed)]
    missing = []
    for written, value, decimals, unit in numbers(_strip_prose(prose)):
        if written in quoted or (not unit and decimals == 0 and value < SMALL_INTEGER):
            continue
        half_unit = 0.5 * 10**-decimals + 1e-9  # "0.95" stands for [0.945, 0.955]
        if not any(abs(v - value) <= half_unit for v in support):
            missing.append(written)
    return missing


def _outputs(cell) -> str:
    parts = []
    for out in cell.get("outputs", []):
        if "text" in out:
            parts.append(out["text"])
        data = out.get("data", {})
        if "text/plain" in data:
            parts.append(data["text/plain"])
    return "\n".join(parts)


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_prose_numbers_are_printed_by_the_code(path):
    nb = EXECUTED_NOTEBOOKS.get(path.resolve())
    if nb is None:
        nb = nbformat.read(path, as_version=4)
        NotebookClient(nb, timeout=900, resources={"metadata": {"path": str(TUTORIALS)}}).execute()
    code = [c for c in nb.cells if c.cell_type == "code"]
    printed = "\n".join(c.source for c in code) + "\n" + "\n".join(_outputs(c) for c in code)
    prose = "\n".join(c.source for c in nb.cells if c.cell_type == "markdown")
    quoted = QUOTED.get(path.stem, {})
    for written in quoted:
        assert written in prose, f"{path.name}: allow-listed {written!r} no longer in the prose"
    assert unsupported(prose, printed, quoted) == [], (
        f"{path.name}: numbers in markdown that no code cell prints or sets"
    )


def test_the_check_catches_a_number_no_output_prints():
    printed = "step 2000: ID 0.948889, OOD 0.448889, 2100 (run.grok_step), 96%, 5.2x"
    assert unsupported("ID reaches 0.93 at step 2000", printed) == ["0.93"]
    assert unsupported("at step 2,100 ID was 97%", printed) == ["97%"]
    assert unsupported("a gap of 5.3x", printed) == ["5.3x"]
    assert unsupported("then 2,200 steps", printed) == ["2,200"]


def test_the_check_accepts_a_printed_number_at_the_prose_precision():
    printed = "ID 0.948889, OOD 0.448889, steps [0, 400, 2100], IoU 0.7, 96%, 5.2x"
    prose = "ID 0.95 (95%), OOD about 45%, step 2,100, IoU 0.70, 96% of them, 5.2x as long"
    assert unsupported(prose, printed) == []
    # names and structure are not measurements
    prose = "# 3 · Title\nnotebooks 2-4, GPT-2 (Merullo et al. 2023), layer 3, section 5.2"
    assert unsupported(prose, printed) == []


def _loads_the_shipped_composition_run(path: Path) -> bool:
    cells = nbformat.read(path, as_version=4).cells
    return any('load_run(RUNS / "composition")' in c.source for c in cells if c.cell_type == "code")


@pytest.mark.parametrize(
    "path", [p for p in NOTEBOOKS if _loads_the_shipped_composition_run(p)], ids=lambda p: p.stem
)
def test_a_tutorial_on_the_shipped_composition_run_says_its_recipe_is_older(path):
    """The shipped composition run was trained with an older recipe than the tutorial preset;
    a reader who trains the preset must learn it where they meet the run, not only in
    data/README.md."""
    nb = nbformat.read(path, as_version=4)
    prose = " ".join(c.source for c in nb.cells if c.cell_type == "markdown")
    prose = re.sub(r"\s+", " ", prose)
    assert "older recipe than" in prose and "`data/README.md`" in prose
