"""Keras's SGD, Adam and RMSprop in float64 NumPy, from their documented updates.

These are the inner optimizers that `km.IGT` wraps; they model Keras's own
formulations (e.g. SGD's momentum m ← μm − αg, Adam's ε added to √v).
"""

import numpy as np


class _PerVariableState:
    def __init__(self):
        self.t = 0
        self.slots = {}

    def slot(self, name, i, like):
        return self.slots.setdefault((name, i), np.zeros_like(like, dtype=np.float64))


class SGDReference(_PerVariableState):
    def __init__(self, momentum=0.0, nesterov=False):
        super().__init__()
        self.momentum, self.nesterov = momentum, nesterov

    def step(self, params, grads, learning_rate):
        self.t += 1
        out = []
        for i, (x, g) in enumerate(zip(params, grads)):
            if self.momentum == 0:
                out.append(x - learning_rate * g)
                continue
            m = self.momentum * self.slot("m", i, x) - learning_rate * g
            self.slots["m", i] = m
            if self.nesterov:
                out.append(x + self.momentum * m - learning_rate * g)
            else:
                out.append(x + m)
        return out


class AdamReference(_PerVariableState):
    def __init__(self, beta_1=0.9, beta_2=0.999, epsilon=1e-7):
        super().__init__()
        self.beta_1, self.beta_2, self.epsilon = beta_1, beta_2, epsilon

    def step(self, params, grads, learning_rate):
        self.t += 1
        b1, b2 = self.beta_1, self.beta_2
        alpha = learning_rate * np.sqrt(1 - b2**self.t) / (1 - b1**self.t)
        out = []
        for i, (x, g) in enumerate(zip(params, grads)):
            m = b1 * self.slot("m", i, x) + (1 - b1) * g
            v = b2 * self.slot("v", i, x) + (1 - b2) * g**2
            self.slots["m", i], self.slots["v", i] = m, v
            out.append(x - alpha * m / (np.sqrt(v) + self.epsilon))
        return out


class RMSpropReference(_PerVariableState):
    def __init__(self, rho=0.9, epsilon=1e-7):
        super().__init__()
        self.rho, self.epsilon = rho, epsilon

    def step(self, params, grads, learning_rate):
        self.t += 1
        out = []
        for i, (x, g) in enumerate(zip(params, grads)):
            v = self.rho * self.slot("v", i, x) + (1 - self.rho) * g**2
            self.slots["v", i] = v
            out.append(x - learning_rate * g / np.sqrt(v + self.epsilon))
        return out


INNER_REFERENCES = {"sgd": SGDReference, "adam": AdamReference, "rmsprop": RMSpropReference}
