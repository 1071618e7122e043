"""The reference tasks of the comparison runner, one module per paper.

`TASKS` maps each task's name to its `Task`; `python -m keras_momenta.compare
--list` prints them with the paper's experiment each stands for and the data
each needs.
"""

import dataclasses
from typing import Callable, Optional

import keras

SCHEDULES = ("constant", "linear", "step")


@dataclasses.dataclass(frozen=True)
class Task:
    """A reference task: data, model, training settings and the paper behind it.

    `load(data_dir)` returns the task's `data.Splits`; the runner shuffles
    (from the run's seed and the epoch), augments with `augment(example,
    seed)` (stateless ops with a shape-[2] seed) and batches the training
    examples. Every entry of a run follows the task's `schedule`:
    "constant"; "linear" (to 0 at the end of the run, the IGT paper's); or
    "step", ÷10 after each fraction of the run in `decay_at`.
    """

    name: str
    paper: str
    # The paper's figure, table or section this task reproduces.
    stands_for: str
    description: str
    load: Callable
    build_model: Callable[[], keras.Model]
    epochs: int
    batch_size: int
    optimizers: tuple
    scale: str = "full"
    # What data the task needs and how to get it.
    data: str = "generated offline"
    loss: str = "sparse_categorical_crossentropy"
    metrics: tuple = ("accuracy",)
    # The validation metric (from `fit`'s logs) the learning-rate sweep selects on.
    selection: str = "val_accuracy"
    augment: Optional[Callable] = None
    shuffle: bool = True
    shuffle_buffer: int = 60_000
    schedule: str = "constant"
    decay_at: tuple = ()
    evaluation_batch_size: int = 1000
    # model -> callbacks that `fit` runs before the runner's own (whose
    # checkpoint then holds their state), e.g. a language model's schedule.
    callbacks: Optional[Callable] = None
    # `final_metrics(model, splits) -> {name: value}`, called once at the end
    # of a run's last epoch with the optimizer's answer in the model; its
    # values join the last history row (e.g. BLEU of decoded translations).
    final_metrics: Optional[Callable] = None

    def __post_init__(self):
        if self.schedule not in SCHEDULES:
            raise ValueError(f"Task {self.name!r}: `schedule` must be one of {SCHEDULES}.")
        if (self.schedule == "step") != bool(self.decay_at):
            raise ValueError(f"Task {self.name!r}: `decay_at` goes with schedule 'step' only.")

    @property
    def maximise(self):
        return not self.selection.endswith("loss")


def _collect(*modules):
    tasks = {}
    for module in modules:
        for task in module.TASKS:
            if task.name in tasks:
                raise ValueError(f"Two tasks are named {task.name!r}.")
            tasks[task.name] = task
    return tasks


from keras_momenta.compare.tasks import (  # noqa: E402
    amortized_nesterov,
    demo,
    dissecting_adam,
    expectigrad,
    igt,
    imagenet,
    translation,
)

TASKS = _collect(demo, expectigrad, igt, dissecting_adam, amortized_nesterov, imagenet, translation)

__all__ = ["SCHEDULES", "TASKS", "Task"]
