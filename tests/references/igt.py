"""IGT and anytime tail averaging (Arnold et al., 2019) in float64 NumPy.

Written from Section 3 (Eq. IGT), Algorithm 1 and Section 4 of the paper. The
model variable is the shifted point θ + γₜ₊₁/(1 − γₜ₊₁)·(θₜ − θₜ₋₁) where the
next gradient is taken; θ is the true iterate.
"""

import numpy as np

from tests.references.keras_optimizers import INNER_REFERENCES


def igt_momentum(t, c=1.0, nonnegative=False):
    if t < 2:
        return 0.0
    if c == 1.0:
        gamma = (t - 1) / t
    else:
        gamma = c * (t - 1) / (1 + c * (t - 1)) * (1 - np.sqrt((1 - c) / (t * (t - 1))) / c)
    return max(gamma, 0.0) if nonnegative else gamma


class IGTReference:
    def __init__(self, inner=("sgd", {}), tail_fraction=1.0, nonnegative_momentum=False):
        """`inner`: (name of a Keras optimizer reference, its kwargs), or a
        reference object with `step(params, grads, learning_rate)`."""
        if isinstance(inner, tuple):
            name, kwargs = inner
            inner = INNER_REFERENCES[name](**kwargs)
        self.inner = inner
        self.c, self.nonnegative = tail_fraction, nonnegative_momentum
        self.t = 0
        self.theta = self.v = None

    def restart(self):
        """The next step starts a new run at the parameters it is given
        (θ ← them, t ← 1); the inner optimizer keeps its state."""
        self.t = 0
        self.theta = None

    def _start(self, params):
        if self.theta is None:
            self.theta = [np.asarray(p, np.float64).copy() for p in params]
            self.v = [np.zeros_like(p) for p in self.theta]

    def apply_weight_decay(self, params, learning_rate, weight_decay, mask):
        """Decoupled weight decay acts on the true iterate."""
        self._start(params)
        self.theta = [
            th - learning_rate * weight_decay * th if decays else th
            for th, decays in zip(self.theta, mask)
        ]

    def step(self, params, grads, learning_rate):
        self._start(params)
        self.t += 1
        gamma = igt_momentum(self.t, self.c, self.nonnegative)
        self.v = [gamma * v + (1 - gamma) * np.asarray(g, np.float64) for v, g in zip(self.v, grads)]
        new_theta = self.inner.step(self.theta, self.v, learning_rate)
        next_gamma = igt_momentum(self.t + 1, self.c, self.nonnegative)
        shift = next_gamma / (1 - next_gamma)
        shifted = [new + shift * (new - old) for new, old in zip(new_theta, self.theta)]
        self.theta = new_theta
        return shifted

    def output_point(self):
        return [th.copy() for th in self.theta]
