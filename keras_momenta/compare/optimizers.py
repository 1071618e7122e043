"""Optimizer entries of the comparison runner.

Each entry maps a name to a factory `f(task) -> keras.optimizers.Optimizer`,
so an entry can follow a task's schedule (steps per epoch, epochs).
Hyperparameters are each method's published defaults unless noted.
"""

import keras

import keras_momenta as km

OPTIMIZERS = {
    "expectigrad": lambda task: km.Expectigrad(learning_rate=1e-3),
    "adam": lambda task: keras.optimizers.Adam(learning_rate=1e-3),
    "amsgrad": lambda task: keras.optimizers.Adam(learning_rate=1e-3, amsgrad=True),
    # Heavy ball with a step size usual for small MLPs.
    "sgd_momentum": lambda task: keras.optimizers.SGD(learning_rate=0.01, momentum=0.9),
}


def make_optimizer(name, task):
    if name not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer entry {name!r}; known: {', '.join(sorted(OPTIMIZERS))}."
        )
    return OPTIMIZERS[name](task)
