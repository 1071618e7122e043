"""AM1-SGD and AM2-SGD (Zhou, Jin, Ding & Cheng, 2020) in float64 NumPy.

Written line by line from the paper's Algorithm 2 (AM1-SGD, momentum scheme)
and Algorithm 4 (AM2-SGD). The model variable is x, where the gradient is
taken; `output_point` is the option's answer. `restart()` makes the next step
the first of a new run from the parameters it is given (Section 6.1).
"""

import numpy as np

MASK32 = 0xFFFFFFFF


def _fmix32(h):
    """MurmurHash3's 32-bit finalizer, on Python integers."""
    h ^= h >> 16
    h = (h * 0x85EBCA6B) & MASK32
    h ^= h >> 13
    h = (h * 0xC2B2AE35) & MASK32
    return h ^ (h >> 16)


def point_index(seed, k, m):
    """The documented index: F(F(F(seed ⊕ 0x9E3779B9) ⊕ (k mod 2³²)) ⊕ ⌊k/2³²⌋) mod m."""
    if m == 1:
        return 0
    h = _fmix32((seed ^ 0x9E3779B9) & MASK32)
    h = _fmix32(h ^ (k & MASK32))
    h = _fmix32(h ^ (k >> 32))
    return h % m


class AM1Reference:
    """Algorithm 2: x ← x − η∇f(x); x̃⁺ ← x̃⁺ + x/m; every m-th step
    x ← x + β(x̃⁺ − x̃), x̃ ← x̃⁺, x̃⁺ ← 0. Option I outputs x, II outputs x̃."""

    def __init__(self, momentum=0.9, amortization=5, option="II"):
        self.beta, self.m, self.option = momentum, amortization, option
        self.restart()
        self.x = None

    def restart(self):
        self.k = 0  # steps since the (re)start
        self.x_tilde = None

    def step(self, params, grads, learning_rate):
        x = [np.asarray(p, np.float64) for p in params]
        if self.x_tilde is None:  # Initialize: x̃ ← x₀, x̃⁺ ← 0
            self.x_tilde = [p.copy() for p in x]
            self.x_plus = [np.zeros_like(p) for p in x]
        x = [p - learning_rate * np.asarray(g, np.float64) for p, g in zip(x, grads)]
        self.x_plus = [xp + p / self.m for xp, p in zip(self.x_plus, x)]
        if (self.k + 1) % self.m == 0:
            x = [p + self.beta * (xp - xt) for p, xp, xt in zip(x, self.x_plus, self.x_tilde)]
            self.x_tilde = self.x_plus
            self.x_plus = [np.zeros_like(p) for p in x]
        self.k += 1
        self.x = x
        return [p.copy() for p in x]

    def output_point(self):
        chosen = self.x if self.option == "I" else self.x_tilde
        return [p.copy() for p in chosen]


class AM2Reference:
    """Algorithm 4 with jₖ = point_index(seed, k, m), k counting every step."""

    def __init__(self, momentum=0.9, amortization=5, option="II", seed=0):
        self.beta, self.m, self.option, self.seed = momentum, amortization, option, seed
        self.k = 0
        self.table = None
        self.x = None

    def restart(self):
        self.table = None

    def step(self, params, grads, learning_rate):
        x = [np.asarray(p, np.float64) for p in params]
        if self.table is None:  # φ⁰ⱼ = x₀ for every j; φ̄⁰ = x₀
            self.table = [[p.copy() for _ in range(self.m)] for p in x]
            self.mean = [p.copy() for p in x]
        j = point_index(self.seed, self.k, self.m)
        j_next = point_index(self.seed, self.k + 1, self.m)
        new_x = []
        for i, (p, g) in enumerate(zip(x, grads)):
            phi = self.table[i]
            old = phi[j]
            phi[j] = p - learning_rate * np.asarray(g, np.float64)
            new_x.append(phi[j] + self.beta * (phi[j_next] - old))
            self.mean[i] = self.mean[i] + (phi[j] - old) / self.m
        self.k += 1
        self.x = new_x
        return [p.copy() for p in new_x]

    def output_point(self):
        chosen = self.x if self.option == "I" else self.mean
        return [p.copy() for p in chosen]
