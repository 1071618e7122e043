"""The comparison runner: train a reference task with several optimizers
over several seeds and report per-epoch metrics, plots and a table.

    python -m keras_momenta.compare --help

Tasks live in `tasks.TASKS`, optimizer entries in `optimizers.OPTIMIZERS`;
later optimizers and tasks join by adding an entry to either.
"""

from keras_momenta.compare.optimizers import OPTIMIZERS
from keras_momenta.compare.runner import run_comparison
from keras_momenta.compare.tasks import TASKS, Task

__all__ = ["OPTIMIZERS", "TASKS", "Task", "run_comparison"]
