"""Expectigrad, Algorithm 1 of Daley & Amato (2020), in float64 NumPy.

`momentum` selects the form of momentum compared in the paper's Section 4.2
(Figure 2, left); s and n are the same in every form, with δ = g / (ε + √(s / n)):

* "outer" (Algorithm 1, Eq. 3): m ← β·m + (1 − β)·δ, x ← x − α / (1 − βᵗ) · m;
* "inner" (classic momentum, Polyak 1964): m ← β·m + (1 − β)·g,
  x ← x − α · m / (ε + √(s / n));
* "inner_bias_corrected" (Kingma & Ba 2014): m as for "inner",
  x ← x − α / (1 − βᵗ) · m / (ε + √(s / n)).

(The paper's Appendix A, which it cites for these equations, is not in the
text we have; the inner forms use the paper's own momentum convention,
m = β·m + (1 − β)·(impulse), which its Section 4.2 uses for the superposition
argument, and differ from each other only by the bias correction.)
"""

import numpy as np

MOMENTUM_FORMS = ("outer", "inner", "inner_bias_corrected")


class ExpectigradReference:
    def __init__(
        self, learning_rate=1e-3, beta=0.9, epsilon=1e-8, sparse_counter=True, momentum="outer"
    ):
        assert momentum in MOMENTUM_FORMS, momentum
        self.beta = beta
        self.epsilon = epsilon
        self.sparse_counter = sparse_counter
        self.momentum = momentum
        self.t = 0
        self.s = self.n = self.m = None

    def step(self, params, grads, learning_rate):
        if self.s is None:
            self.s = [np.zeros_like(p, dtype=np.float64) for p in params]
            self.n = [np.zeros_like(p, dtype=np.float64) for p in params]
            self.m = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.t += 1
        new_params = []
        for i, (x, g) in enumerate(zip(params, grads)):
            g = np.asarray(g, dtype=np.float64)
            self.s[i] = self.s[i] + g**2
            self.n[i] = self.n[i] + np.sign(g**2)
            count = self.n[i] if self.sparse_counter else np.full_like(g, self.t)
            # The paper defines 0/0 = 0: a coordinate that never had a nonzero
            # gradient has s = n = 0 and gets denominator epsilon.
            mean_square = np.divide(
                self.s[i], count, out=np.zeros_like(g), where=count != 0
            )
            denominator = self.epsilon + np.sqrt(mean_square)
            bias_correction = 1 - self.beta**self.t
            if self.momentum == "outer":
                self.m[i] = self.beta * self.m[i] + (1 - self.beta) * (g / denominator)
                update = learning_rate / bias_correction * self.m[i]
            else:
                self.m[i] = self.beta * self.m[i] + (1 - self.beta) * g
                rate = learning_rate if self.momentum == "inner" else learning_rate / bias_correction
                update = rate * self.m[i] / denominator
            new_params.append(np.asarray(x, np.float64) - update)
        return new_params
