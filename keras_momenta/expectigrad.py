"""Expectigrad (Daley & Amato, 2020)."""

import keras
from keras import ops

from keras_momenta import _sparse
from keras_momenta._base import (
    MomentaOptimizer,
    check_bool,
    check_in_range,
    check_positive,
    constant,
    keras_arguments,
    state_dtype,
)


@keras.saving.register_keras_serializable(package="keras_momenta")
class Expectigrad(MomentaOptimizer):
    """Expectigrad: arithmetic-mean normalisation with outer momentum.

    For each coordinate, with gradient g at step t = 1, 2, ...:

        s ← s + g²                       running sum of squared gradients
        n ← n + sign(g²)                 count of nonzero gradients
        m ← β·m + (1 − β)·g / (ε + √(s / n))        (0/0 is taken as 0)
        θ ← θ − α / (1 − βᵗ) · m

    The denominator is the root of the arithmetic mean of all past squared
    gradients (not an exponential moving average as in Adam), and momentum is
    applied to the whole normalised step ("outer" momentum), so earlier steps
    are never rescaled by later denominators.

    With `sparse_counter=False`, n = t for every coordinate (the mean counts
    zero gradients too) and no counter is stored. With `beta=0` there is no
    momentum state and no bias correction: θ ← θ − α·g / (ε + √(s / n)).
    The bias correction uses the global step t in every mode, as in the paper's
    Algorithm 1.

    Row-sparse gradients (`tf.IndexedSlices`, from `keras.layers.Embedding`)
    give the same result as their dense equivalent: s and n are updated only
    on the touched rows, and with `beta=0` so is the variable; with `beta > 0`
    momentum keeps moving the untouched rows, as the dense update does.

    State per variable: s, n (unless `sparse_counter=False`) and m (unless
    `beta=0`). For float16/bfloat16 variables the state is kept in float32.

    Reference: B. Daley and C. Amato, "Expectigrad: Fast Stochastic
    Optimization with Robust Convergence Properties", 2020, Algorithm 1.

    Args:
        learning_rate: α > 0, a float, a `LearningRateSchedule` or a callable.
        beta: momentum constant β in [0, 1).
        epsilon: denominator constant ε > 0.
        sparse_counter: count nonzero gradients per coordinate (True) or use
            the global step as the count (False).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    value_independent_update = True

    def __init__(
        self,
        learning_rate=1e-3,
        beta=0.9,
        epsilon=1e-8,
        sparse_counter=True,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="expectigrad",
        **kwargs,
    ):
        check_in_range("beta", beta, 0.0, 1.0)
        check_positive("epsilon", epsilon)
        check_bool("sparse_counter", sparse_counter)
        super().__init__(
            learning_rate=learning_rate,
            **keras_arguments(locals()),
            **kwargs,
        )
        self.beta = float(beta)
        self.epsilon = float(epsilon)
        self.sparse_counter = sparse_counter

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._sums = [self.add_state_variable(v, "sum") for v in var_list]
        self._counts = (
            [self.add_state_variable(v, "count") for v in var_list]
            if self.sparse_counter
            else []
        )
        self._momentums = (
            [self.add_state_variable(v, "momentum") for v in var_list]
            if self.beta > 0
            else []
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, dtype)
        step = self.local_step(dtype)
        gradient = _sparse.deduplicate(_sparse.cast(gradient, dtype))

        squared = ops.square(gradient)
        running_sum = self._sums[index]
        self.assign_add(running_sum, squared)
        if self.sparse_counter:
            count = self._counts[index]
            self.assign_add(count, ops.sign(squared))
            states = (running_sum, count)
        else:
            states = (running_sum,)

        epsilon = constant(self.epsilon, dtype)
        beta = constant(self.beta, dtype)

        def scaled_step(scale):
            def fn(g, s, n=step):
                mean_square = ops.divide_no_nan(s, n)
                return ops.multiply(scale, ops.divide(g, ops.add(epsilon, ops.sqrt(mean_square))))

            return _sparse.map_rows(fn, gradient, *states)

        if self.beta == 0:
            self.assign_sub(variable, _sparse.cast(scaled_step(lr), variable.dtype))
            return

        momentum = self._momentums[index]
        if _sparse.is_row_sparse(gradient):
            self.assign(momentum, ops.multiply(beta, momentum))
            self.assign_add(momentum, scaled_step(1 - beta))
        else:
            self.assign(momentum, ops.add(ops.multiply(beta, momentum), scaled_step(1 - beta)))
        corrected_lr = ops.divide(lr, 1 - ops.power(beta, step))
        self.assign_sub(variable, ops.cast(ops.multiply(corrected_lr, momentum), variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "epsilon": self.epsilon,
                "sparse_counter": self.sparse_counter,
            }
        )
        return config
