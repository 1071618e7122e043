"""Float64 NumPy references, each written from its paper (not from the Keras code).

A reference has `step(params, grads, learning_rate) -> new params` over lists
of arrays and keeps its own state; `t` counts the updates applied.
"""

from tests.references.expectigrad import ExpectigradReference
from tests.references.igt import IGTReference

__all__ = ["ExpectigradReference", "IGTReference"]
