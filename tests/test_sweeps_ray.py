"""Sweeps on a real local Ray instance: one instance for the module (starting Ray takes about ten
seconds), six tiny trials, and a sweep whose driver is killed part-way and started again.

The reference is the sweep run without interruption: every trial of the killed-and-restarted
sweep must end with exactly its metrics (exact resume), the trials that had finished must not
train again, and the one that was cut off must continue from its checkpoint."""

import contextlib
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest

ray = pytest.importorskip("ray")

from grok_circuits.runs.run import read_metrics  # noqa: E402
from grok_circuits.sweeps import load_sweep, sweep  # noqa: E402
from tests.conftest import TINY_COMPOSITION  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
MAX_STEPS = 20
SPEC = {
    "task": "composition",
    "preset": "tutorial",
    "task_params": {k: v for k, v in TINY_COMPOSITION.items() if k != "phi"},
    "grid": {"seed": [0, 1, 2], "phi": [1.5, 2.0]},
    "train": dict(
        max_steps=MAX_STEPS,
        batch_size=64,
        eval_every=5,
        eval_size=200,
        warmup_steps=10,
        model_size="tiny",
        device="cpu",
        stop_id_acc=None,
    ),
}


@pytest.fixture(scope="module")
def ray_address():
    """One local Ray instance with two CPUs; its workers import this checkout."""
    before = os.environ.get("PYTHONPATH")
    os.environ["PYTHONPATH"] = os.pathsep.join(p for p in (str(ROOT), before) if p)
    ray.init(num_cpus=2, include_dashboard=False, configure_logging=False)
    try:
        yield ray.get_runtime_context().gcs_address
    finally:
        ray.shutdown()
        if before is None:
            os.environ.pop("PYTHONPATH")
        else:
            os.environ["PYTHONPATH"] = before


@pytest.fixture(scope="module")
def uninterrupted(ray_address, tmp_path_factory):
    out = tmp_path_factory.mktemp("sweep") / "uninterrupted"
    return sweep(SPEC, out, progress=False)


def _rows(run_dir: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if k != "time"} for r in read_metrics(run_dir)]


def test_every_trial_is_a_finished_run_folder(uninterrupted):
    names = {p.name for p in uninterrupted.path.iterdir() if (p / "metrics.json").is_file()}
    # 3 seeds x 2 phis, named by their values
    assert names == {f"phi={phi},seed={seed}" for seed in (0, 1, 2) for phi in (1.5, 2.0)}
    assert [r["status"] for r in uninterrupted.results] == ["trained"] * 6
    for name, run in uninterrupted.runs().items():
        assert run.last_step == MAX_STEPS
        assert run.task.params.phi == float(name.split(",")[0].split("=")[1])
        # a bare `seed` seeds both the data and the weights
        seed = int(name.split("seed=")[1])
        assert run.task.params.seed == seed and run.train_cfg.seed == seed
    frame = uninterrupted.to_frame()
    assert len(frame) == 6 and set(frame["last_step"]) == {MAX_STEPS}


def test_sweep_started_again_trains_nothing(uninterrupted):
    before = {p: p.stat().st_mtime_ns for p in uninterrupted.path.glob("*/metrics.json")}
    again = sweep(SPEC, uninterrupted.path, progress=False)
    assert [r["status"] for r in again.results] == ["skipped"] * 6
    assert {p: p.stat().st_mtime_ns for p in before} == before


def _progress(out: Path) -> dict[str, int]:
    """Trial -> step of its latest intact checkpoint (from the index, written last)."""
    steps = {}
    for index in out.glob("*/checkpoints.json"):
        done = [int(s) for s in json.loads(index.read_text())]
        steps[index.parent.name] = max(done) if done else 0
    return steps


def _trial_workers() -> list[psutil.Process]:
    """The Ray worker processes running a trial now (Ray titles them after the task)."""
    found = []
    for proc in psutil.process_iter(["cmdline"]):
        if any("run_trial" in part for part in proc.info["cmdline"] or []):
            found.append(proc)
    return found


def _freeze(procs: list[psutil.Process]) -> list[psutil.Process]:
    """Suspend each process still alive; returns those suspended."""
    frozen = []
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.suspend()
            frozen.append(proc)
    return frozen


def _thaw(procs: list[psutil.Process]) -> None:
    for proc in procs:
        with contextlib.suppress(psutil.NoSuchProcess):
            proc.resume()


def test_killed_driver_resumes_to_the_uninterrupted_metrics(uninterrupted, ray_address, tmp_path):
    # four of the six trials (same names, so the same runs), to keep the test short
    spec = {**SPEC, "grid": {"seed": [0, 1], "phi": [1.5, 2.0]}}
    spec_file = tmp_path / "spec.json"  # JSON is YAML
    spec_file.write_text(json.dumps(spec))
    out = tmp_path / "killed"
    env = {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), os.environ["PYTHONPATH"]])}
    driver = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "grok_circuits.cli",
            "sweep",
            str(spec_file),
            "--out",
            str(out),
            "--address",
            ray_address,
        ],
        env=env,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
        start_new_session=True,
    )
    deadline = time.monotonic() + 180
    workers: list[psutil.Process] = []
    try:
        # kill once one trial is done and one half-way. The trials' workers are frozen while
        # their progress is read, so that the trial seen half-way is still half-way when the
        # machine goes down (a 20-step trial can finish in the moment between a look and a kill)
        while time.monotonic() < deadline:
            workers = _freeze(_trial_workers())
            steps = _progress(out)
            if MAX_STEPS in steps.values() and any(0 < s < MAX_STEPS for s in steps.values()):
                break
            _thaw(workers)
            assert driver.poll() is None, "the sweep ended before it could be killed"
            time.sleep(0.05)
        else:
            pytest.fail("no trial was half-way within 180 s")
    finally:
        workers += _freeze(_trial_workers())  # any that started since the look
        os.killpg(driver.pid, signal.SIGKILL)
        driver.wait()
        for proc in workers:
            with contextlib.suppress(psutil.NoSuchProcess):
                proc.kill()
    assert workers, "no Ray worker was running a trial when the sweep was killed"
    finished = {name for name, s in _progress(out).items() if s == MAX_STEPS}
    mtimes = {name: (out / name / "metrics.json").stat().st_mtime_ns for name in finished}

    restarted = sweep(spec_file, out, progress=False)

    status = {r["trial"]: r for r in restarted.results}
    assert {n for n, r in status.items() if r["status"] == "skipped"} >= finished
    resumed = [r for r in status.values() if r["status"] == "resumed"]
    assert resumed and all(0 < r["from_step"] < MAX_STEPS for r in resumed)
    for name in finished:  # finished trials did not train again
        assert (out / name / "metrics.json").stat().st_mtime_ns == mtimes[name]
    for trial in load_sweep(out).trials:
        assert _rows(out / trial.name) == _rows(uninterrupted.path / trial.name), trial.name
