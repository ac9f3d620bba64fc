"""``grok-circuits``: train a grokking run, and report on one.

    grok-circuits train composition --preset tutorial --out runs/composition
    grok-circuits report runs/composition
    grok-circuits sweep sweep.yaml --out runs/sweep
    grok-circuits sweep-report runs/sweep

Thin by design: it parses arguments and calls the public API. The package is imported inside
each command, so that ``--help`` waits for no torch and ``report`` for no TransformerLens.
"""

import argparse
import contextlib
import dataclasses
import errno
import json
import os
import sys
import warnings
from pathlib import Path
from typing import TYPE_CHECKING, Literal

if TYPE_CHECKING:
    from grok_circuits.config import TrainConfig

#: The small runs that come with grok_circuits (``data/runs``); figures are never written there.
SHIPPED_DATA = Path(__file__).resolve().parent.parent / "data"


def _value(text: str):
    """Parse ``KEY=VALUE`` values: JSON when it parses (numbers, null, true), else a string."""
    try:
        return json.loads(text)
    except json.JSONDecodeError:
        return text


def _pairs(items: list[str], what: str) -> dict:
    out = {}
    for item in items:
        if "=" not in item:
            raise ValueError(f"{what} {item!r} must look like KEY=VALUE: a name, '=', its value")
        key, value = item.split("=", 1)
        out[key.strip()] = _value(value)
    return out


def _numbers(texts: list[str], kinds: tuple[type, ...], flag: str) -> tuple:
    """``--lr-decay 900 1400 0.2`` -> ``(900, 1400, 0.2)``, each read as its kind (a step is an
    integer), or a ValueError naming the flag."""
    try:
        return tuple(kind(text) for kind, text in zip(kinds, texts))
    except ValueError:
        shape = " ".join("STEP" if kind is int else "FACTOR" for kind in kinds)
        raise ValueError(
            f"{flag} {' '.join(texts)}: expected {shape} (steps are integers, e.g. "
            f"{'900 1400 0.2' if len(kinds) == 3 else '300 3'})"
        ) from None


def import_plugins(argv: list[str]) -> None:
    """Import the modules named by ``--import MODULE`` before the parser is built, so that the
    tasks they register are choices of ``train`` and known to ``report`` and ``analyze``."""
    import importlib

    for i, arg in enumerate(argv):
        name = argv[i + 1] if arg == "--import" and i + 1 < len(argv) else None
        if arg.startswith("--import="):
            name = arg.split("=", 1)[1]
        if name is None:
            continue
        try:
            importlib.import_module(name)
        except ImportError as err:
            raise SystemExit(
                f"error: --import {name}: {err}; is the module on PYTHONPATH?"
            ) from None


def load_run(path: Path, data: Path | None = None):
    """:func:`grok_circuits.load_run`, imported when a command first needs it (``data``: the
    dataset of a folder of Hugging Face checkpoints)."""
    from grok_circuits.runs.load import load_run

    return load_run(path, data=data)


class _TaskNames:
    """The task names as argparse ``choices``, looked up only when argparse checks or prints
    them: the lookup imports the task generators (and torch), which ``--help`` need not wait for.
    """

    def __contains__(self, name: object) -> bool:
        return name in self._names()

    def __iter__(self):
        return iter(self._names())

    @staticmethod
    def _names() -> list[str]:
        from grok_circuits.tasks import task_names

        return task_names()


def figures_dir(
    run_path: Path, requested: Path | None, sub: str = "", read_only: bool = False
) -> Path:
    """The folder ``report`` and ``analyze`` write figures to: ``requested`` if given; else
    ``run_path / sub`` when the run folder is writable, not one of the shipped runs and not
    ``read_only`` (``Run.read_only``: a folder of Hugging Face checkpoints is never written to);
    else ``sub`` in the current directory."""
    if requested is not None:
        return requested
    run_path = run_path.resolve()
    writable = os.access(run_path, os.W_OK) and not read_only
    if writable and not run_path.is_relative_to(SHIPPED_DATA):
        return run_path / sub
    return Path.cwd() / sub


DATA_HELP = (
    "for a folder of Hugging Face checkpoint-<step>/ folders (the paper's released runs): the "
    "dataset folder it was trained on (train/valid/test/vocab.json)"
)


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="grok-circuits", description=__doc__.split("\n")[0])
    parser.add_argument(
        "--import",
        dest="plugins",
        action="append",
        default=[],
        metavar="MODULE",
        help="import a module that registers tasks of your own (grok_circuits.register_task); "
        "repeatable",
    )
    sub = parser.add_subparsers(dest="command", required=True)

    t = sub.add_parser("train", help="generate a task and train a transformer on it")
    t.add_argument("task", choices=_TaskNames(), metavar="TASK", help="one of: %(choices)s")
    t.add_argument(
        "--preset",
        default="tutorial",
        help="task and training preset: tutorial (default), paper, or any the task registers",
    )
    t.add_argument("--out", required=True, type=Path, help="run folder to create (or resume)")
    t.add_argument("--seed", type=int, help="seed of the data, the weights and the batch order")
    t.add_argument("--phi", type=float, help="inferred / atomic ratio of the training set")
    t.add_argument("--steps", type=int, help="max training steps")
    t.add_argument("--lr", type=float, help="peak learning rate")
    t.add_argument("--weight-decay", type=float, help="AdamW weight decay")
    t.add_argument("--batch-size", type=int, help="batch size (0 = full batch)")
    t.add_argument("--warmup", type=int, help="warm-up steps")
    t.add_argument(
        "--lr-decay",
        nargs=3,
        metavar=("START", "END", "FACTOR"),
        help="anneal the learning rate linearly after step START to FACTOR x lr at step END",
    )
    t.add_argument(
        "--weight-decay-after",
        nargs=2,
        metavar=("STEP", "FACTOR"),
        help="after step STEP, train with FACTOR x the weight decay",
    )
    t.add_argument(
        "--no-schedule",
        action="store_true",
        default=None,
        help="constant learning rate after warm-up and constant weight decay (drops the "
        "preset's lr_decay and weight_decay_after)",
    )
    t.add_argument("--eval-every", type=int, help="evaluate every N steps")
    t.add_argument("--model-size", choices=["tiny", "tutorial", "paper"])
    t.add_argument(
        "--n-loops",
        type=int,
        help="share parameters: run n_layers / N unique blocks N times (paper appendix E.2: 2)",
    )
    t.add_argument(
        "--core",
        type=int,
        help="recurrent depth: N blocks iterated --iterations times, each iteration hooked",
    )
    t.add_argument("--prelude", type=int, help="with --core: N blocks before the core")
    t.add_argument("--coda", type=int, help="with --core: N blocks after the core")
    t.add_argument(
        "--iterations",
        type=_iterations_arg,
        help="with --core: how many times training runs it: N, or LO-HI drawn per batch",
    )
    t.add_argument(
        "--iterations-mean",
        type=float,
        help="with --iterations LO-HI: draw from a Poisson of this mean, clipped (paper: 4)",
    )
    t.add_argument(
        "--eval-iterations",
        type=int,
        help="with --core: the count evaluation and checkpoints use (default: N, or HI)",
    )
    t.add_argument(
        "--hop-curriculum",
        type=float,
        help="two hops first, one more each time that hop count's ID test passes this (0.95)",
    )
    t.add_argument(
        "--inject",
        action="store_true",
        default=None,
        help="with --core: add the prelude's output before each iteration after the first",
    )
    t.add_argument(
        "--stop-id-acc", type=float, help="stop once ID accuracy has held this (0 disables)"
    )
    t.add_argument(
        "--stop-ood-acc", type=float, help="with --stop-id-acc, also wait for this OOD accuracy"
    )
    t.add_argument("--device", help="auto (default), cpu, cuda, ...")
    t.add_argument(
        "--precision",
        choices=["auto", "float32", "bf16"],
        help="the training forward pass: bf16 autocast, float32, or auto (bf16 where the device "
        "has it in hardware); default: the preset's",
    )
    t.add_argument(
        "--threads",
        type=int,
        help="CPU threads for training (default: one per core not busy with other work)",
    )
    t.add_argument(
        "--task-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="any task parameter, e.g. n_entities=200 (repeatable)",
    )
    t.add_argument(
        "--model-param",
        action="append",
        default=[],
        metavar="KEY=VALUE",
        help="a model config field (backend.PORTABLE_FIELDS), e.g. n_layers=2 (repeatable)",
    )
    t.add_argument(
        "--resume",
        action="store_true",
        help="continue the run in --out; only --steps, --stop-id-acc, --stop-ood-acc, --device "
        "and --threads may change",
    )
    t.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    t.add_argument("--no-report", action="store_true", help="skip the report at the end")

    r = sub.add_parser("report", help="summarise a run and plot its accuracy curves")
    r.add_argument("run", type=Path, help="run folder")
    r.add_argument(
        "--out",
        type=Path,
        help="folder for curves.png (default: the run folder if writable and not a shipped run, "
        "else the current directory)",
    )
    r.add_argument("--png", type=Path, help="the curves' file, overriding --out")
    r.add_argument("--json", action="store_true", help="print the summary as JSON")
    r.add_argument("--data", type=Path, help=DATA_HELP)

    a = sub.add_parser(
        "analyze",
        help="the standard analyses of a run, as its task registered them: reasoning traces "
        "and stages, the circuit, circuit reuse (tasks made of two), the Fourier spectrum",
    )
    a.add_argument("run", type=Path, help="run folder")
    a.add_argument("--n-examples", type=int, default=300, help="examples traced (paper: 300)")
    a.add_argument("--top-k", type=int, default=6, help="components per circuit")
    a.add_argument("--data", type=Path, help=DATA_HELP)
    a.add_argument(
        "--out",
        type=Path,
        help="folder for the figures (default: RUN/analysis if the run folder is writable and "
        "not a shipped run, else ./analysis)",
    )

    e = sub.add_parser("export", help="copy a run with a few checkpoints (for sharing)")
    e.add_argument("run", type=Path, help="run folder")
    e.add_argument("dest", type=Path, help="new folder")
    e.add_argument("--steps", type=int, nargs="+", help="checkpoints to keep")
    e.add_argument(
        "--max-checkpoints",
        type=int,
        default=8,
        help="without --steps: about this many, log-spaced, always including the "
        "memorizing and generalizing checkpoints (default 8)",
    )
    w = sub.add_parser(
        "sweep",
        help="train a grid or list of runs (task parameters x TrainConfig fields x seeds) on Ray",
    )
    w.add_argument("spec", type=Path, help="the sweep's YAML file (see grok_circuits.sweeps)")
    w.add_argument("--out", required=True, type=Path, help="sweep folder: one run folder a trial")
    w.add_argument(
        "--address",
        help="an existing Ray cluster (default: $RAY_ADDRESS, else a local Ray instance)",
    )
    w.add_argument(
        "--local", action="store_true", help="no Ray: the trials one after another, in-process"
    )
    w.add_argument(
        "--max-retries", type=int, default=3, help="restarts of a trial whose worker died"
    )

    sr = sub.add_parser(
        "sweep-report", help="a sweep's steps to memorize / generalize over seeds, and the plot"
    )
    sr.add_argument("sweep", type=Path, help="sweep folder")
    sr.add_argument("--x", help="the swept name on the plot's axis (default: the first)")
    sr.add_argument(
        "--out", type=Path, help="folder for sweep_report.csv and steps.png (default: the sweep's)"
    )
    return parser


def cmd_sweep(args) -> int:
    from grok_circuits.sweeps import sweep

    engine: Literal["ray", "local"] = "local" if args.local else "ray"
    result = sweep(
        args.spec, args.out, engine=engine, address=args.address, max_retries=args.max_retries
    )
    print(f"\n{len(result.trials)} trials in {args.out}; grok-circuits sweep-report {args.out}")
    return 0


def cmd_sweep_report(args) -> int:
    import pandas as pd

    from grok_circuits.sweeps import load_sweep
    from grok_circuits.viz.training import save_figure

    result = load_sweep(args.sweep)
    if args.x is not None and args.x not in result.swept:
        raise ValueError(f"--x {args.x} is not swept; the sweep varies {result.swept}")
    table = result.report()
    with pd.option_context("display.width", 160, "display.max_columns", 30):
        print(table.round(3).to_string())
    out = args.out or args.sweep
    out.mkdir(parents=True, exist_ok=True)
    table.to_csv(out / "sweep_report.csv")
    print(f"\ntable: {out / 'sweep_report.csv'}")
    if result.swept:  # a sweep of one trial has no axis to plot
        png = out / "steps.png"
        save_figure(result.plot(args.x), png)
        print(f"plot:  {png}")
    return 0


def cmd_analyze(args) -> int:
    from grok_circuits.analysis import analyze

    run = load_run(args.run, args.data)
    out = figures_dir(run.path, args.out, "analysis", read_only=run.read_only)
    result = analyze(run, n_examples=args.n_examples, top_k=args.top_k)
    print(result)
    paths = result.save(out)
    print(f"\nfigures: {', '.join(str(p) for p in paths)}")
    return 0


def cmd_export(args) -> int:
    from grok_circuits.runs.run import export_run, key_steps
    from grok_circuits.runs.series import is_checkpoint_series

    if is_checkpoint_series(args.run):
        raise ValueError(
            f"{args.run} is a folder of Hugging Face checkpoints; export copies grok_circuits "
            "runs (analyse the checkpoints where they are, with --data)"
        )
    run = load_run(args.run)
    steps = args.steps or key_steps(run, args.max_checkpoints)
    small = export_run(run, args.dest, steps)
    print(f"exported {len(small.steps)} checkpoints {small.steps} to {args.dest}")
    return 0


def cmd_train(args) -> int:
    from grok_circuits.checks import check_field_types
    from grok_circuits.tasks import make_params, make_task
    from grok_circuits.training.loop import already_finished, train
    from grok_circuits.training.presets import train_config

    if args.device is not None:
        from grok_circuits.model import resolve_device

        resolve_device(args.device)  # also where a resumed run turns out finished, training nothing
    task_overrides = _pairs(args.task_param, "--task-param")
    # A value of the wrong type would fail deep inside the task's checks; name the field here.
    check_field_types(type(make_params(args.task, args.preset)), task_overrides)
    if args.seed is not None:
        task_overrides["seed"] = args.seed
    if args.phi is not None:
        task_overrides["phi"] = args.phi  # make_params names the task's fields if it has none
    task = make_task(args.task, preset=args.preset, **task_overrides)
    cfg = train_config(args.task, args.preset)
    changes = {
        "seed": args.seed,
        "max_steps": args.steps,
        "lr": args.lr,
        "weight_decay": args.weight_decay,
        "warmup_steps": args.warmup,
        "eval_every": args.eval_every,
        "model_size": args.model_size,
        "n_loops": args.n_loops,
        "core": args.core,
        "prelude": args.prelude,
        "coda": args.coda,
        "iterations": args.iterations,
        "iterations_mean": args.iterations_mean,
        "eval_iterations": args.eval_iterations,
        "inject": args.inject,
        "hop_curriculum": args.hop_curriculum,
        "device": args.device,
        "threads": args.threads,
        "precision": args.precision,
    }
    if args.no_schedule:
        changes.update(lr_decay=None, weight_decay_after=None)
    if args.lr_decay is not None:
        changes["lr_decay"] = _numbers(args.lr_decay, (int, int, float), "--lr-decay")
    if args.weight_decay_after is not None:
        changes["weight_decay_after"] = _numbers(
            args.weight_decay_after, (int, float), "--weight-decay-after"
        )
    if args.batch_size is not None:
        changes["batch_size"] = args.batch_size or None
    if args.stop_id_acc is not None:
        changes["stop_id_acc"] = args.stop_id_acc or None
    if args.stop_ood_acc is not None:
        changes["stop_ood_acc"] = args.stop_ood_acc or None
    schedule = {k: changes.pop(k) for k in ("lr_decay", "weight_decay_after") if k in changes}
    changes = {k: v for k, v in changes.items() if v is not None}
    cfg = dataclasses.replace(cfg, **changes, **schedule)  # a schedule may be set to None
    model_cfg = None
    model_params = _pairs(args.model_param, "--model-param")
    if model_params:
        from grok_circuits.model import model_config
        from grok_circuits.recurrence import depth_overrides

        model_cfg = model_config(task, cfg.model_size, **{**depth_overrides(cfg), **model_params})
    # on --resume, None: the run's stored config
    run_cfg = _resume_cfg(args, cfg, model_params) if args.resume else cfg
    if args.resume and already_finished(args.out, task, run_cfg) is not None:
        train(task, run_cfg, out=args.out, resume=True)  # says so, and trains nothing
        return 0
    stats = task.stats()

    def total(kind: str) -> int:  # the mixed task prefixes its counts with the sub-task
        if kind in stats:  # a task with both (mixed modular arithmetic) gives the total itself
            return int(stats[kind])
        return int(sum(v for k, v in stats.items() if k.endswith(f".{kind}")))

    atomic = f"{total('atomic')} atomic facts, " if total("atomic") else ""
    print(
        f"{task.name} ({args.preset}): {atomic}"
        f"{total('train_inferred')} training inferred, {stats['train']} training rows"
    )
    if run_cfg is not None and run_cfg.precision == "auto":
        from grok_circuits.model import resolve_device
        from grok_circuits.training.precision import resolve_precision

        device = resolve_device(run_cfg.device)
        chosen = resolve_precision("auto", device)
        has = "has" if chosen == "bf16" else "has no"
        print(
            f"precision auto: {chosen} (this {device.type} {has} bf16 matrix products in "
            "hardware; --precision float32 or bf16 to choose)"
        )
    run = train(
        task,
        run_cfg,
        out=args.out,
        model_cfg=model_cfg,
        resume=args.resume,
        progress=not args.no_progress,
    )
    if not args.no_report:
        report(run)
    return 0


#: The ``train`` flags a resumed run cannot change, and the TrainConfig field(s) each sets.
_FIXED_ON_RESUME: dict[str, str | tuple[str, ...]] = {
    "--seed": "seed",
    "--lr": "lr",
    "--weight-decay": "weight_decay",
    "--batch-size": "batch_size",
    "--warmup": "warmup_steps",
    "--no-schedule": ("lr_decay", "weight_decay_after"),
    "--lr-decay": "lr_decay",
    "--weight-decay-after": "weight_decay_after",
    "--eval-every": "eval_every",
    "--model-size": "model_size",
    "--n-loops": "n_loops",
    "--core": "core",
    "--prelude": "prelude",
    "--coda": "coda",
    "--iterations": "iterations",
    "--iterations-mean": "iterations_mean",
    "--eval-iterations": "eval_iterations",
    "--inject": "inject",
    "--hop-curriculum": "hop_curriculum",
    "--precision": "precision",
}


def _iterations_arg(text: str) -> int | tuple[int, int]:
    """``--iterations``: ``N`` or a range ``LO-HI``."""
    try:
        if "-" in text:
            lo, hi = text.split("-")
            return int(lo), int(hi)
        return int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(
            f"{text!r} is not a count N or a range LO-HI (e.g. 4 or 2-8)"
        ) from None


def _resume_cfg(args, cfg: "TrainConfig", model_params: dict) -> "TrainConfig | None":
    """On --resume of a run, its stored config with the flags a resumed run may change (None if
    none is given); ``cfg`` itself if ``--out`` holds no run yet (a new run). A ValueError names
    every other flag that differs from the run, rather than ignore it."""
    from grok_circuits.io import read_json
    from grok_circuits.runs.run import MODEL_CONFIG_FILE, TRAIN_CONFIG_FILE

    if not (args.out / TRAIN_CONFIG_FILE).is_file():
        return cfg
    stored = load_run(args.out).train_cfg
    ignored = []
    for flag, names in _FIXED_ON_RESUME.items():
        given = getattr(args, flag[2:].replace("-", "_"))
        if given is None:
            continue
        fields = (names,) if isinstance(names, str) else names
        name = next((n for n in fields if getattr(cfg, n) != getattr(stored, n)), None)
        if name is None:
            continue
        # --inject and --no-schedule are switches; --lr-decay gives several values
        values = given if isinstance(given, list) else [given]
        shown = "" if given is True else " " + " ".join(map(str, values))
        ignored.append(f"{flag}{shown} (the run has {name}={getattr(stored, name)!r})")
    stored_model = read_json(args.out / MODEL_CONFIG_FILE)
    for key, value in model_params.items():
        if stored_model.get(key) != value:
            ignored.append(
                f"--model-param {key}={value} (the run has {key}={stored_model.get(key)!r})"
            )
    if ignored:
        raise ValueError(
            f"cannot resume {args.out} with {', '.join(ignored)}: a resumed run continues the "
            "same training, so only --steps, --stop-id-acc, --stop-ood-acc, --device and "
            "--threads may change; drop the others, or train a new run into another --out"
        )
    asked = {
        "max_steps": args.steps,
        "stop_id_acc": args.stop_id_acc,
        "stop_ood_acc": args.stop_ood_acc,
        "device": args.device,
        "threads": args.threads,
    }
    asked = {k: v for k, v in asked.items() if v is not None}
    if not asked:
        return None
    for key in ("stop_id_acc", "stop_ood_acc"):
        if key in asked:
            asked[key] = asked[key] or None  # 0 on the command line disables the rule
    return dataclasses.replace(stored, **asked)


def report(run, png: Path | None = None, as_json: bool = False, out: Path | None = None) -> Path:
    """Print the run's summary and save its accuracy curves, with the progress measures under
    them, to ``png`` (default: ``curves.png`` in :func:`figures_dir`)."""
    from grok_circuits.viz.measures import plot_training_report
    from grok_circuits.viz.training import save_figure

    summary = run.summary()
    if as_json:
        print(json.dumps(summary, indent=2))
    else:
        width = max(len(k) for k in summary)
        print(f"\nrun {run.path}")
        for key, value in summary.items():
            if isinstance(value, float):
                value = f"{value:.3f}"
            print(f"  {key:<{width}}  {value if value is not None else '-'}")
    png = png or figures_dir(run.path, out, read_only=run.read_only) / "curves.png"
    png.parent.mkdir(parents=True, exist_ok=True)
    save_figure(plot_training_report(run), png)
    if not as_json:
        print(f"  {'curves':<{width}}  {png}")
    return png


def cmd_report(args) -> int:
    report(load_run(args.run, args.data), args.png, args.json, args.out)
    return 0


def os_error_line(err: OSError) -> str:
    """What went wrong with a path, and what to do, in one line (Python's ``[Errno 13]
    Permission denied: 'x'`` says neither which folder is in the way nor what would help)."""
    if err.filename is None:  # raised by grok_circuits with a message of its own
        return str(err)
    path = Path(err.filename)
    if err.errno in (errno.ENOTDIR, errno.EEXIST) and not path.is_dir():
        blocker = next((p for p in (path, *path.parents) if p.is_file()), None)
        if blocker == path:
            return f"{path} is a file, not a folder; give the path of a folder (new or existing)"
        if blocker is not None:
            return (
                f"{path} is under {blocker}, which is a file, not a folder; give a folder path "
                "that no file is in the way of"
            )
    if err.errno in (errno.EACCES, errno.EPERM):
        if path.is_dir():
            return (
                f"cannot write into {path}: permission denied; choose a folder you may write "
                "to, or ask its owner for access"
            )
        if path.exists():
            return (
                f"cannot open {path}: permission denied; ask its owner for access, or work on "
                "a copy of your own"
            )
        return (
            f"cannot create {path}: permission denied in {path.parent}; choose a folder you may "
            "write to"
        )
    if err.errno == errno.EROFS:
        return f"cannot write {path}: read-only file system; choose a folder on a writable disk"
    if err.errno == errno.ENOSPC:
        return f"no space left to write {path}; free some space, or choose a folder elsewhere"
    return f"{path}: {err.strerror}; check the path and its permissions"


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    import_plugins(argv)
    args = build_parser().parse_args(argv)
    with _plain_warnings():
        return _run_command(args)


@contextlib.contextmanager
def _plain_warnings():
    """Show each warning as one ``warning: ...`` line, once per command. Python's own format adds
    the file, line and source of the call, and a damaged checkpoint is met by every step that
    opens the run (the command, the resume, the reloaded run)."""
    seen = set()

    def show(message, category, filename, lineno, file=None, line=None):
        if str(message) not in seen:
            seen.add(str(message))
            print(f"warning: {message}", file=sys.stderr)

    with warnings.catch_warnings():
        warnings.showwarning = show
        yield


def _run_command(args) -> int:
    try:
        if args.command == "train":
            return cmd_train(args)
        if args.command == "export":
            return cmd_export(args)
        if args.command == "analyze":
            return cmd_analyze(args)
        if args.command == "sweep":
            return cmd_sweep(args)
        if args.command == "sweep-report":
            return cmd_sweep_report(args)
        return cmd_report(args)
    except (ValueError, RuntimeError) as err:
        print(f"error: {err}", file=sys.stderr)
        return 2
    except OSError as err:
        print(f"error: {os_error_line(err)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(
            "\ninterrupted; the run resumes from its last checkpoint with --resume",
            file=sys.stderr,
        )
        return 130


if __name__ == "__main__":
    sys.exit(main())
