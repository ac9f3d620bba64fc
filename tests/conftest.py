"""Shared fixtures: tiny seeded tasks and a short training run, all offline and fast."""

from pathlib import Path

import pytest
import torch
from nbmake.nb_run import NotebookRun

from grok_circuits.tasks import make_task

TINY_COMPOSITION = dict(
    n_entities=30, n_relations=6, out_degree=3, phi=2.0, test_id_fraction=0.1, ood_fraction=0.1
)
#: A small k-hop composition task: trained on 2 hops, tested on up to 3.
TINY_KHOP = dict(
    n_entities=20,
    n_relations=4,
    out_degree=3,
    phi=1.0,
    ood_fraction=0.2,
    test_id_fraction=0.1,
    train_hops=2,
    test_hops=3,
    max_test=40,
)
TINY_COMPARISON = dict(n_entities=20, n_attributes=3, n_values=4, phi=2.0, test_id_fraction=0.1)


def pytest_report_header(config):
    from grok_circuits import backend

    return f"grok_circuits backend: TransformerLens {backend.TL_VERSION} ({backend.BACKEND})"


@pytest.fixture(autouse=True)
def _types_unchecked_for_wrong_types(request):
    """A test marked ``wrong_types`` passes what a signature refuses, to reach the library's own
    one-line error: the run-time type check of the signatures (``--jaxtyping-packages``, which
    would refuse the call first) is off during it."""
    if request.node.get_closest_marker("wrong_types") is None:
        yield
        return
    import jaxtyping

    before = jaxtyping.config.jaxtyping_disable
    jaxtyping.config.update("jaxtyping_disable", True)
    try:
        yield
    finally:
        jaxtyping.config.update("jaxtyping_disable", before)


@pytest.fixture(scope="session", autouse=True)
def one_torch_thread():
    """Run the tests on one intra-op thread, then restore the setting.

    The test models are tiny, so extra threads buy nothing, while every small op pays for
    synchronising OpenMP threads (ten times slower on a busy two-core machine). Results do not
    depend on it."""
    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session", autouse=True)
def metrics_cache_of_this_run(tmp_path_factory):
    """Checkpoint series keep their evaluated metrics in a cache outside their folders
    (grok_circuits.runs.series.cache_dir); the tests keep theirs in a folder of this run, so that
    no test reads a row another run wrote."""
    import os

    before = os.environ.get("GROK_CIRCUITS_CACHE")
    os.environ["GROK_CIRCUITS_CACHE"] = str(tmp_path_factory.mktemp("cache"))
    yield
    if before is None:
        del os.environ["GROK_CIRCUITS_CACHE"]
    else:
        os.environ["GROK_CIRCUITS_CACHE"] = before


@pytest.fixture(scope="session")
def tiny_composition():
    return make_task("composition", preset=None, **TINY_COMPOSITION)


@pytest.fixture(scope="session")
def tiny_khop():
    return make_task("composition", preset=None, **TINY_KHOP)


@pytest.fixture(scope="session")
def tiny_comparison():
    return make_task("comparison", preset=None, **TINY_COMPARISON)


#: Each tutorial as nbmake executed it in this test run (path -> executed notebook).
EXECUTED_NOTEBOOKS: dict = {}
_nbmake_execute = NotebookRun.execute


def _execute_and_keep(self):
    """nbmake's own execution, with the executed notebook kept for
    ``tests/test_tutorial_prose.py``: executing each tutorial a second time would double the
    tutorials' share of the test run. (``testpaths`` puts ``tutorials`` first.)"""
    result = _nbmake_execute(self)
    if result.error is None:
        EXECUTED_NOTEBOOKS[Path(self.filename).resolve()] = result.nb
    return result


NotebookRun.execute = _execute_and_keep
