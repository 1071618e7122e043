"""M-SSD, M-SVAG and ADAM* of Balles & Hennig (2018), in float64 NumPy.

Written from the paper: Algorithm 1 (M-SSD), 2 (M-SVAG), 3 (M-SVAG-mb),
4 (ADAM*) and 5 (ADAM*-mb), κ(μ, t) of Eq. 19 and the mini-batch variance of
Eq. 44 in its unbiased form. `released_code=True` follows the description of
the authors' released M-SVAG code instead of Algorithm 2.

With variance="minibatch", `step` takes `statistics=(square_sums, batch_size)`:
Σₖ ∇ℓₖ² per parameter over the batch's examples, and their number.
"""

import numpy as np


def kappa(mu, t):
    """Eq. 19."""
    return (1 - mu ** (2 * t)) * (1 - mu) ** 2 / ((1 - mu**2) * (1 - mu**t) ** 2)


class MSSDReference:
    def __init__(self, learning_rate=1e-3, momentum=0.9):
        self.mu = momentum
        self.m = None

    def step(self, params, grads, learning_rate):
        if self.m is None:
            self.m = [np.zeros_like(p, dtype=np.float64) for p in params]
        new_params = []
        for i, (x, g) in enumerate(zip(params, grads)):
            self.m[i] = self.mu * self.m[i] + g
            new_params.append(x - learning_rate * np.sign(self.m[i]))  # sign(0) = 0
        return new_params


class _VarianceAdaptedReference:
    def __init__(self, learning_rate=None, momentum=0.9, variance="moving_average", released_code=False):
        self.mu = momentum
        self.variance = variance
        self.released_code = released_code
        self.t = 0
        self.m = self.v = None  # m̃, ṽ (moving averages) or m, s̄ (mini-batch)

    def step(self, params, grads, learning_rate, statistics=None):
        if self.m is None:
            self.m = [np.zeros_like(p, dtype=np.float64) for p in params]
            self.v = [np.zeros_like(p, dtype=np.float64) for p in params]
        self.t += 1
        mu, t = self.mu, self.t
        new_params = []
        for i, (x, g) in enumerate(zip(params, grads)):
            g = np.asarray(g, np.float64)
            if self.variance == "moving_average":
                self.m[i] = mu * self.m[i] + (1 - mu) * g
                self.v[i] = mu * self.v[i] + (1 - mu) * g**2
                m = self.m[i] / (1 - mu**t)
                v = self.v[i] / (1 - mu**t)
                with np.errstate(divide="ignore", invalid="ignore"):
                    if self.released_code:
                        rho = min(kappa(mu, t), 0.9999)
                        s = (v - m**2) / (1 - rho)
                        gamma = np.clip(m**2 / (m**2 + rho * s), 0.0, 1.0)
                        gamma = np.where(np.isnan(gamma), 0.0, gamma)
                    else:
                        # Rounding must not make the variance estimate negative.
                        eta2 = kappa(mu, t) * np.maximum(v - m**2, 0.0) / m**2
                        gamma = self.factor(eta2)
            else:
                square_sums, batch_size = statistics
                square_sum = np.asarray(square_sums[i], np.float64)
                if batch_size > 1:
                    s_hat = np.maximum(square_sum / batch_size - g**2, 0.0) / (batch_size - 1)
                else:
                    s_hat = np.zeros_like(g)
                self.v[i] = mu**2 * self.v[i] + s_hat
                self.m[i] = mu * self.m[i] + g
                m = self.m[i]
                with np.errstate(divide="ignore", invalid="ignore"):
                    gamma = self.factor(self.v[i] / m**2)
            # m = 0: the update is 0 (Algorithm 2's note), whatever γ is.
            new_params.append(x - learning_rate * np.where(m == 0, 0.0, gamma * self.direction(m)))
        return new_params


class MSVAGReference(_VarianceAdaptedReference):
    @staticmethod
    def factor(eta2):
        return 1 / (1 + eta2)

    @staticmethod
    def direction(m):
        return m


class AdamStarReference(_VarianceAdaptedReference):
    @staticmethod
    def factor(eta2):
        return (1 + eta2) ** -0.5

    @staticmethod
    def direction(m):
        return np.sign(m)
