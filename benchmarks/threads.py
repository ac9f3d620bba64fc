"""Training speed by number of CPU threads, on idle cores and with one core held busy.

    python benchmarks/threads.py                 # ~5 minutes on 2 CPU cores
    python benchmarks/threads.py --steps 60

Trains the tutorial composition preset (the README's main command) for ``--steps`` steps three
ways: ``threads=None`` (the default: :func:`grok_circuits.training.cpu.choose_threads` on the
cores free at the start), 1 thread and 2 threads; first on the machine as it is (after waiting up
to ``--wait-idle`` seconds for other work to drop below half a core), then while a busy-loop
process started by this script holds one core. It prints how many cores were busy before each
phase, steps per second, and the ratio against 1 thread measured in the same phase. The busy
process stops itself after ``--busy-limit`` seconds and is killed when the script ends.
"""

import argparse
import dataclasses
import subprocess
import sys
import tempfile
import time

from grok_circuits.tasks import make_task
from grok_circuits.tasks.composition import TUTORIAL_AS_RECORDED
from grok_circuits.training.cpu import busy_cores, choose_threads, usable_cores
from grok_circuits.training.loop import train

BUSY_LOOP = "import time\nend = time.time() + {limit}\nwhile time.time() < end:\n    pass\n"


def steps_per_second(task, cfg) -> float:
    """Steps per second between the first and the last evaluation (one evaluation included)."""
    with tempfile.TemporaryDirectory() as out:
        run = train(task, cfg, out=out, progress=False)
    first, last = run.metrics[0], run.metrics[-1]
    return (last["step"] - first["step"]) / (last["time"] - first["time"])


def measure(task, cfg, phase: str) -> None:
    load = busy_cores()
    chosen = choose_threads(usable_cores(), load)
    print(f"{phase}: {load:.2f} cores busy before measuring")
    speeds = {}
    for label, threads in (("default", None), ("1 thread", 1), ("2 threads", 2)):
        speeds[label] = steps_per_second(task, dataclasses.replace(cfg, threads=threads))
    for label, speed in speeds.items():
        note = f" (chose {chosen})" if label == "default" else ""
        ratio = speed / speeds["1 thread"]
        print(f"{phase:<10} {label + note:<22} {speed:7.2f} steps/s  {ratio:5.2f}x vs 1 thread")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--steps", type=int, default=40, help="training steps per measurement")
    parser.add_argument("--busy-limit", type=float, default=900, help="seconds the busy loop lives")
    parser.add_argument(
        "--wait-idle", type=float, default=120, help="seconds to wait for the cores to go idle"
    )
    args = parser.parse_args()

    task = make_task("composition", preset="tutorial")
    cfg = dataclasses.replace(
        TUTORIAL_AS_RECORDED,  # the recipe its recorded figures were measured with
        max_steps=args.steps,
        eval_every=args.steps,
        eval_size=100,
        device="cpu",
    )
    print(f"{usable_cores()} usable cores; tutorial composition, {args.steps} steps each\n")
    waited = time.monotonic()
    while busy_cores() >= 0.5 and time.monotonic() - waited < args.wait_idle:
        time.sleep(5)
    measure(task, cfg, "as found")
    busy = subprocess.Popen([sys.executable, "-c", BUSY_LOOP.format(limit=args.busy_limit)])
    try:
        time.sleep(1.0)  # let the busy loop get its core
        measure(task, cfg, "+1 busy")
    finally:
        busy.kill()
        busy.wait()


if __name__ == "__main__":
    main()
