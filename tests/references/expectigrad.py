"""Expectigrad, Algorithm 1 of Daley & Amato (2020), in float64 NumPy."""

import numpy as np


class ExpectigradReference:
    def __init__(self, learning_rate=1e-3, beta=0.9, epsilon=1e-8, sparse_counter=True):
        self.beta = beta
        self.epsilon = epsilon
        self.sparse_counter = sparse_counter
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
            adaptive_step = g / (self.epsilon + np.sqrt(mean_square))
            self.m[i] = self.beta * self.m[i] + (1 - self.beta) * adaptive_step
            bias_correction = 1 - self.beta**self.t
            new_params.append(np.asarray(x, np.float64) - learning_rate / bias_correction * self.m[i])
        return new_params
