"""Expectigrad (Daley & Amato, 2020)."""

import functools

import keras
from keras import ops

from keras_momenta import _backend
from keras_momenta._base import (
    MomentaOptimizer,
    check_bool,
    check_in_range,
    check_one_of,
    check_positive,
    constant,
    keras_arguments,
    state_dtype,
)

# Where momentum is applied (the paper's Section 4.2 ablation); "outer" is Expectigrad.
MOMENTUM_FORMS = ("outer", "inner", "inner_bias_corrected")


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

    Momentum variants. The paper's Section 4.2 (Figure 2, left) compares its
    outer momentum with two forms of the usual "inner" momentum, which
    averages the raw gradients and divides the average by the current
    denominator; `momentum` selects the form (s and n are updated as above in
    every form):

        "outer" (default, the paper's Expectigrad, Algorithm 1):
            m ← β·m + (1 − β)·g / (ε + √(s / n))
            θ ← θ − α / (1 − βᵗ) · m
        "inner" (classic momentum, Polyak 1964, no bias correction):
            m ← β·m + (1 − β)·g
            θ ← θ − α · m / (ε + √(s / n))
        "inner_bias_corrected" (as in Adam, Kingma & Ba 2014):
            m ← β·m + (1 − β)·g
            θ ← θ − α / (1 − βᵗ) · m / (ε + √(s / n))

    Inner momentum rescales every earlier gradient still held in m by the
    latest denominator; outer momentum fixes each step's scale when the step
    is taken (the paper's linear-superposition argument). The inner forms
    exist for that ablation; "outer" is Expectigrad. With `beta=0` the three
    forms are the same update and keep no momentum state. The state
    variables are the same in number and order in every form (m holds
    normalised steps in "outer", raw gradients in the inner forms, so a
    checkpoint is meaningful only with the form that wrote it). The paper
    cites its Appendix A for these rules; that appendix is not in the text
    this was written from, so the inner forms use the paper's own (1 − β)
    momentum convention (its Section 4.2) and differ only by the bias
    correction.

    Row-sparse gradients (`tf.IndexedSlices`, from `keras.layers.Embedding`)
    give the same result as their dense equivalent: s and n are updated only
    on the touched rows, and with `beta=0` so is the variable; with `beta > 0`
    momentum keeps moving the untouched rows, as the dense update does.

    State per variable: s, n (unless `sparse_counter=False`) and m (unless
    `beta=0`). For float16/bfloat16 variables the state is kept in float32.

    Reference: B. Daley and C. Amato, "Expectigrad: Fast Stochastic
    Optimization with Robust Convergence Properties", 2020, Algorithm 1
    (and Section 4.2 for the momentum variants).

    Args:
        learning_rate: α > 0, a float, a `LearningRateSchedule` or a callable.
        beta: momentum constant β in [0, 1).
        epsilon: denominator constant ε > 0.
        sparse_counter: count nonzero gradients per coordinate (True) or use
            the global step as the count (False).
        momentum: where momentum is applied: "outer" (default, Expectigrad),
            "inner" or "inner_bias_corrected" (the paper's ablation, above).
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
        momentum="outer",
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
        check_arguments(beta, epsilon, sparse_counter, momentum)
        super().__init__(
            learning_rate=learning_rate,
            **keras_arguments(locals()),
            **kwargs,
        )
        self.beta = float(beta)
        self.epsilon = float(epsilon)
        self.sparse_counter = sparse_counter
        self.momentum = momentum

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._sums = [self.add_state_variable(v, "sum") for v in var_list]
        # A float32 sum of squares is carried with its rounding error: alone
        # it stops growing after about 2²⁴ steps.
        self._sum_errors = [
            self.add_state_variable(v, "sum_error") if state_dtype(v.dtype) == "float32" else None
            for v in var_list
        ]
        self._counts = (
            [self.add_state_variable(v, "count", dtype="int32") for v in var_list]
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
        gradient = _backend.cast(gradient, dtype)
        sparse = _backend.is_row_sparse(gradient)
        running_sum, error = self._sums[index], self._sum_errors[index]
        count = self._counts[index] if self.sparse_counter else None
        statistics = [v for v in (running_sum, error, count) if v is not None]

        def accumulate(g, total, *rest):
            rest = iter(rest)
            return accumulate_squares(
                g,
                total,
                next(rest) if error is not None else None,
                next(rest) if count is not None else None,
            )

        # Written by value: every occurrence of a repeated row carries the same sum.
        new_statistics = _backend.map_rows(
            accumulate, _backend.deduplicate(gradient, every_occurrence=True), *statistics
        )
        for state, value in zip(statistics, new_statistics):
            self.assign(state, value)

        epsilon = constant(self.epsilon, dtype)
        beta = constant(self.beta, dtype)

        def divide(scale, values, total, *counts):
            """scale · values / (ε + √(s / n)), values shaped like the state."""
            n = unsigned_count(counts[0], dtype) if counts else step
            return normalised_step(values, total, n, epsilon, scale)

        def normalised(scale):
            """The gradient divided, on its own rows if it is row-sparse."""
            if not sparse:  # the values just computed, not the variables read again
                counts = [new_statistics[-1]] if count is not None else []
                return divide(scale, gradient, new_statistics[0], *counts)
            # Added once per index: repeated rows after the first are zeros.
            counts = [count] if count is not None else []
            return _backend.map_rows(
                functools.partial(divide, scale), _backend.deduplicate(gradient),
                running_sum, *counts,
            )

        if self.beta == 0:  # every momentum form: θ ← θ − α·g / (ε + √(s / n))
            self.assign_sub(variable, _backend.cast(normalised(lr), variable.dtype))
            return

        momentum = self._momentums[index]
        outer = self.momentum == "outer"
        if outer:  # m averages the divided gradients
            impulse = normalised(1 - beta)
        else:  # m averages the gradients themselves
            impulse = _backend.map_rows(
                lambda g: ops.multiply(1 - beta, g), _backend.deduplicate(gradient)
            )
        if sparse:
            self.assign(momentum, ops.multiply(beta, momentum))
            self.assign_add(momentum, impulse)
        else:
            new_momentum = ops.add(ops.multiply(beta, momentum), impulse)
            self.assign(momentum, new_momentum)
        rate = lr if self.momentum == "inner" else bias_corrected_rate(lr, beta, step)
        if outer:
            self.assign_sub(variable, ops.cast(ops.multiply(rate, momentum), variable.dtype))
            return
        # Inner momentum: all of m is divided by today's denominator, on every
        # row (untouched rows of a sparse gradient move too, as in the dense update).
        if sparse:
            counts = [ops.convert_to_tensor(count)] if count is not None else []
            inner_step = divide(
                rate, ops.convert_to_tensor(momentum), ops.convert_to_tensor(running_sum), *counts
            )
        else:
            counts = [new_statistics[-1]] if count is not None else []
            inner_step = divide(rate, new_momentum, new_statistics[0], *counts)
        self.assign_sub(variable, ops.cast(inner_step, variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta": self.beta,
                "epsilon": self.epsilon,
                "sparse_counter": self.sparse_counter,
                "momentum": self.momentum,
            }
        )
        return config


def check_arguments(beta, epsilon, sparse_counter, momentum):
    """A `ValueError` naming the first argument out of its range."""
    check_in_range("beta", beta, 0.0, 1.0)
    check_positive("epsilon", epsilon)
    check_bool("sparse_counter", sparse_counter)
    check_one_of("momentum", momentum, MOMENTUM_FORMS)


# The update maths: functions of tensors in `keras.ops`, shared by every front end.


def accumulate_squares(gradient, total, error=None, count=None):
    """Expectigrad's running statistics after gradient g.

    Returns [s + g²] followed, when given, by the sum's new rounding error
    (`error`: s is carried as the pair s + error, see `add_compensated`) and
    the new count of nonzero gradients n + [g² > 0] (`count`, in its own
    dtype: int32 here, the variable's float dtype in `keras_momenta.official`).
    """
    squared = ops.square(gradient)
    if error is None:
        new = [ops.add(total, squared)]
    else:
        new = list(add_compensated(total, error, squared))
    if count is not None:
        new.append(ops.add(count, ops.cast(ops.greater(squared, 0), count.dtype)))
    return new


def normalised_step(gradient, total, count, epsilon, scale):
    """scale · g / (ε + √(s / n)), with 0/0 in s / n taken as 0."""
    mean_square = _backend.divide_no_nan(total, count)
    return ops.multiply(scale, ops.divide(gradient, ops.add(epsilon, ops.sqrt(mean_square))))


def bias_corrected_rate(learning_rate, beta, step):
    """α / (1 − βᵗ), the rate applied to the outer momentum at step t."""
    return ops.divide(learning_rate, 1 - ops.power(beta, step))


def add_compensated(total, error, x):
    """(total, error) + x, a sum kept as the unevaluated pair total + error.

    Knuth's TwoSum gives the exact rounding error of total + x, which is added
    to `error`; the pair is then renormalised so that |error| ≤ ulp(total)/2.
    In float32 the pair holds the sum to about 48 bits: no increment is lost
    while it is above 2⁻⁴⁸ of the sum (naively, 2⁻²⁴).
    """
    rounded = ops.add(total, x)
    virtual = ops.subtract(rounded, total)
    rounding = ops.add(
        ops.subtract(total, ops.subtract(rounded, virtual)), ops.subtract(x, virtual)
    )
    error = ops.add(error, rounding)
    new_total = ops.add(rounded, error)
    return new_total, ops.subtract(error, ops.subtract(new_total, rounded))


def unsigned_count(count, dtype):
    """An int32 count read as unsigned (exact to 2³² − 1), as `dtype`."""
    value = ops.cast(count, dtype)
    return ops.where(ops.less(count, 0), ops.add(value, constant(2.0**32, dtype)), value)
