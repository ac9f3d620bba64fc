"""Training presets to go with the task presets.

``"paper"`` is the paper's recipe (AdamW lr 1e-4, weight decay 0.1, batch 512, 2,000 warm-up
steps then constant, clipping 1.0, the 8-layer GPT-2-shaped model). ``"tutorial"`` is what we
measured to grok fastest on two CPU cores; ``benchmarks/README.md`` records what was tried and
``benchmarks/time_to_grok.py`` measures it.
"""

from grok_circuits.config import TrainConfig

PAPER = TrainConfig(
    max_steps=1_500_000,
    batch_size=512,
    lr=1e-4,
    weight_decay=0.1,
    betas=(0.9, 0.999),
    warmup_steps=2000,
    eval_every=1000,
    eval_size=3000,
    dense_until=20_000,
    model_size="paper",
)

#: Shared by the tutorial presets: lr 2e-3 with 200 warm-up steps and weight decay 0.5 grokked
#: the tutorial composition task in the fewest steps of the settings in benchmarks/README.md
#: (comparison changes the learning rate and the decay, below).
_TUTORIAL = dict(
    batch_size=512,
    lr=2e-3,
    weight_decay=0.5,
    warmup_steps=200,
    eval_every=100,
    stop_id_acc=0.95,
    stop_patience=5,
    model_size="tutorial",
)

TUTORIAL: dict[str, TrainConfig] = {
    "composition": TrainConfig(max_steps=6000, **_TUTORIAL),
    # OOD comparison needs a steadier hand than composition: at lr 2e-3 it crossed 0.9 sooner
    # but swung between 0.86 and 0.93 from one evaluation to the next; lr 1e-3 with weight
    # decay 2.0 (the same decay per step) kept it rising. The run stops once ID and OOD have
    # both held their targets.
    "comparison": TrainConfig(
        max_steps=6000,
        **{**_TUTORIAL, "lr": 1e-3, "weight_decay": 2.0, "stop_ood_acc": 0.9},
    ),
    # Both sub-tasks must have generalized before circuits are compared, and the stopping rule
    # reads one probe only, so the mixed run trains for a fixed number of steps.
    "mixed": TrainConfig(max_steps=3000, **{**_TUTORIAL, "stop_id_acc": None}),
}


def train_config(task: str, preset: str = "tutorial") -> TrainConfig:
    """The training preset for a task: ``"tutorial"`` or ``"paper"``."""
    if preset == "paper":
        return PAPER
    if preset == "tutorial":
        if task not in TUTORIAL:
            raise ValueError(
                f"no tutorial training preset for task {task!r}; have {sorted(TUTORIAL)}"
            )
        return TUTORIAL[task]
    raise ValueError(f"unknown training preset {preset!r}; choose 'tutorial' or 'paper'")
