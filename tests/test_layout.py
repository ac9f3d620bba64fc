"""The layout check: every import of the package runs down its layers, with no circle."""

from pathlib import Path

from grok_circuits import _layout

LAYERS = {"pkg": [("low",), ("mid_a", "mid_b"), ("top",)]}
PACKAGES = {"pkg", "pkg.mid_a"}


def test_the_package_holds_its_layout():
    graph, packages = _layout.import_graph()
    assert _layout.violations(graph, packages) == []
    # the check saw the package: the facades and the deepest analysis modules are in the graph
    assert {"grok_circuits", "grok_circuits.analysis", "grok_circuits.backend"} <= packages
    assert "grok_circuits.tasks.vocab" in graph["grok_circuits.tasks.data"]


def test_a_planted_upward_import_a_sibling_import_and_a_circle_are_each_reported():
    graph = {
        "pkg": {"pkg.top"},  # a facade may import its own package
        "pkg.low": {"pkg.top"},  # up
        "pkg.mid_a": set(),
        "pkg.mid_a.x": {"pkg.mid_b", "pkg.mid_a.y"},  # sibling of one layer
        "pkg.mid_a.y": {"pkg.mid_a.x"},  # a circle inside an unordered package
        "pkg.mid_b": {"pkg.low"},  # down: fine
        "pkg.top": {"pkg.mid_b", "pkg.low"},
    }
    found = _layout.violations(graph, PACKAGES, LAYERS)
    assert found == [
        "pkg.low imports pkg.top: up from layer low to layer top of pkg",
        "pkg.mid_a.x imports pkg.mid_b: mid_a and mid_b share a layer of pkg",
        "import circle: pkg.low -> pkg.top -> pkg.low",
        "import circle: pkg.mid_a.x -> pkg.mid_a.y -> pkg.mid_a.x",
    ]


def test_importing_the_facade_of_its_own_package_and_an_unplaced_module_are_reported():
    graph = {"pkg": set(), "pkg.low": {"pkg"}, "pkg.new": set(), "pkg.top": set()}
    found = _layout.violations(graph, {"pkg"}, LAYERS)
    assert found == [
        "pkg.new has no layer: add it to LAYERS['pkg']",
        "pkg.low imports pkg, the facade of its own package: import the module",
    ]


def test_imports_inside_functions_and_relative_imports_are_read(tmp_path: Path):
    root = tmp_path / "grok_circuits"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("")
    (root / "a.py").write_text("")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("def f():\n    from grok_circuits import a\n")
    (root / "sub" / "c.py").write_text("from . import b\nfrom ..a import x\n")
    graph, packages = _layout.import_graph(root)
    assert graph["grok_circuits.sub.b"] == {"grok_circuits.a"}
    assert graph["grok_circuits.sub.c"] == {"grok_circuits.sub.b", "grok_circuits.a"}
    assert packages == {"grok_circuits", "grok_circuits.sub"}


def test_the_tree_counts_lines(tmp_path: Path):
    root = tmp_path / "grok_circuits"
    (root / "sub").mkdir(parents=True)
    (root / "__init__.py").write_text("x = 1\n")
    (root / "sub" / "__init__.py").write_text("")
    (root / "sub" / "b.py").write_text("a\nb\nc\n")
    assert _layout.tree(root).splitlines() == [
        "grok_circuits/  4",
        "  sub/  3",
        "    __init__.py  0",
        "    b.py  3",
        "  __init__.py  1",
    ]
