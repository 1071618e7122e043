"""Yogi (Zaheer et al., 2018), a small baseline for the Reddi benchmark only.

    m ← β₁m + (1 − β₁)g
    v ← v − (1 − β₂)·sign(v − g²)·g²
    θ ← θ − α·m / (√v + ε)

Algorithm 2 of "Adaptive Methods for Nonconvex Optimization" (NeurIPS 2018),
without bias correction, v starting at `initial_accumulator`.
"""

import keras
from keras import ops


class Yogi(keras.optimizers.Optimizer):
    def __init__(
        self,
        learning_rate=1e-2,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-3,
        initial_accumulator=1e-6,
        name="yogi",
        **kwargs,
    ):
        super().__init__(learning_rate=learning_rate, name=name, **kwargs)
        self.beta_1, self.beta_2 = beta_1, beta_2
        self.epsilon, self.initial_accumulator = epsilon, initial_accumulator

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._m = [self.add_variable_from_reference(v, "m") for v in var_list]
        self._v = [
            self.add_variable_from_reference(
                v, "v", initializer=keras.initializers.Constant(self.initial_accumulator)
            )
            for v in var_list
        ]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        i = self._get_variable_index(variable)
        m, v = self._m[i], self._v[i]
        g = ops.cast(gradient, dtype)
        g2 = ops.square(g)
        self.assign(m, self.beta_1 * m + (1 - self.beta_1) * g)
        self.assign(v, v - (1 - self.beta_2) * ops.sign(v - g2) * g2)
        lr = ops.cast(learning_rate, dtype)
        self.assign_sub(variable, lr * m / (ops.sqrt(v) + self.epsilon))

    def get_config(self):
        config = super().get_config()
        config.update(
            beta_1=self.beta_1,
            beta_2=self.beta_2,
            epsilon=self.epsilon,
            initial_accumulator=self.initial_accumulator,
        )
        return config
