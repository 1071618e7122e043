"""One entry per optimizer configuration checked by the conformance suite.

A later optimizer joins the suite by adding entries here (and its reference
under `tests/references/`).
"""

import dataclasses
from typing import Any, Callable

import keras_momenta as km
from tests.references import ExpectigradReference


@dataclasses.dataclass(frozen=True)
class OptimizerCase:
    id: str
    cls: type
    kwargs: dict
    reference: Callable[..., Any]
    # (constructor kwargs, argument name the ValueError must mention)
    invalid: tuple = ()
    # Keras keeps the learning rate in a float32 variable: a power of two is
    # exact there, so float64 runs can be compared at rtol 1e-10.
    learning_rate: float = 2.0**-5

    def make(self, **overrides):
        kwargs = {"learning_rate": self.learning_rate, **self.kwargs, **overrides}
        return self.cls(**kwargs)

    def make_reference(self):
        return self.reference(**self.kwargs)


EXPECTIGRAD_INVALID = (
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"beta": 1.0}, "beta"),
    ({"beta": -0.1}, "beta"),
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": -1e-8}, "epsilon"),
    ({"sparse_counter": "yes"}, "sparse_counter"),
)

CASES = [
    OptimizerCase(
        f"expectigrad-beta{beta}-{'sparse' if sparse else 'dense'}_counter",
        km.Expectigrad,
        {"beta": beta, "sparse_counter": sparse},
        ExpectigradReference,
        invalid=EXPECTIGRAD_INVALID,
    )
    for beta, sparse in [(0.9, True), (0.9, False), (0.0, True), (0.0, False)]
]

# Each package optimizer class must have at least one case.
assert set(km.OPTIMIZERS.values()) <= {case.cls for case in CASES}
