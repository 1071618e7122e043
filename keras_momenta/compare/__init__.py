"""The comparison runner: the papers' experiments as tasks, trained with
several optimizers, step sizes and seeds, resumably, with plots and tables.

    python -m keras_momenta.compare --list
    python -m keras_momenta.compare --help

Tasks live in `tasks.TASKS` (one module per paper), optimizer entries in
`optimizers.OPTIMIZERS`; later ones join by adding an entry to either.
"""

from keras_momenta.compare.data import MissingDataError, Splits
from keras_momenta.compare.optimizers import OPTIMIZERS, Entry
from keras_momenta.compare.runner import run_comparison
from keras_momenta.compare.tasks import TASKS, Task

__all__ = ["OPTIMIZERS", "TASKS", "Entry", "MissingDataError", "Splits", "Task", "run_comparison"]
