"""Sign and variance adaptation: M-SSD, M-SVAG and ADAM* (Balles & Hennig, 2018).

The paper splits Adam into two aspects, the sign of the update direction and
a per-coordinate "variance adaptation" factor, and recombines them (its
Table 1): SGD (neither), SSD (sign only), SVAG (variance adaptation only) and
Adam (both). Each comes here with momentum μ; μ = 0 gives the plain method.

Reference: L. Balles and P. Hennig, "Dissecting Adam: The Sign, Magnitude and
Variance of Stochastic Gradients", ICML 2018 (arXiv:1705.07774).
"""

import keras
from keras import ops

from keras_momenta import _backend
from keras_momenta._base import (
    MomentaOptimizer,
    check_bool,
    check_in_range,
    constant,
    keras_arguments,
    state_dtype,
    variable_path_name,
)

VARIANCE_MODES = ("moving_average", "minibatch")
# The released M-SVAG code caps ρ = κ(μ, t) below 1 so that 1/(1 − ρ) stays finite.
RELEASED_RHO_CAP = 0.9999


@keras.saving.register_keras_serializable(package="keras_momenta")
class MSSD(MomentaOptimizer):
    """M-SSD: stochastic sign descent with momentum (Algorithm 1).

    For each coordinate, with gradient g:

        m ← μ·m + g
        θ ← θ − α·sign(m)                sign(0) = 0

    Every coordinate moves by exactly α (or not at all where m = 0), whatever
    the gradient's magnitude. With `momentum=0` this is SSD, θ ← θ − α·sign(g),
    and there is no state; row-sparse gradients then move only their rows
    (repeated rows are summed before the sign is taken). With momentum, m
    keeps moving untouched rows, as the dense update does.

    State per variable: m (none when `momentum=0`); float32 for float16 and
    bfloat16 variables.

    Args:
        learning_rate: α > 0, a float, a `LearningRateSchedule` or a callable.
        momentum: μ in [0, 1).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    value_independent_update = True

    def __init__(
        self,
        learning_rate=1e-3,
        momentum=0.9,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="mssd",
        **kwargs,
    ):
        check_in_range("momentum", momentum, 0.0, 1.0)
        super().__init__(
            learning_rate=learning_rate,
            **keras_arguments(locals()),
            **kwargs,
        )
        self.momentum = float(momentum)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._momentums = (
            [self.add_state_variable(v, "momentum") for v in var_list]
            if self.momentum > 0
            else []
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        lr = ops.cast(learning_rate, dtype)
        gradient = _backend.cast(gradient, dtype)
        if self.momentum == 0:
            step = _backend.map_rows(
                lambda g: ops.multiply(lr, ops.sign(g)), _backend.deduplicate(gradient)
            )
            self.assign_sub(variable, _backend.cast(step, variable.dtype))
            return
        momentum = self._momentums[self._get_variable_index(variable)]
        mu = constant(self.momentum, dtype)
        if _backend.is_row_sparse(gradient):
            self.assign(momentum, ops.multiply(mu, momentum))
            self.assign_add(momentum, gradient)
            new_momentum = momentum
        else:
            new_momentum = summed_momentum(momentum, gradient, mu)
            self.assign(momentum, new_momentum)
        self.assign_sub(variable, ops.cast(ops.multiply(lr, ops.sign(new_momentum)), variable.dtype))

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum})
        return config


class _VarianceAdapted(MomentaOptimizer):
    """What M-SVAG and ADAM* share: the estimate of the relative variance η².

    A subclass defines `_direction(m, variance_of_m)`: the update direction
    given the momentum term m and the estimated variance of m, so that
    η² = variance_of_m / m².
    """

    def __init__(self, learning_rate, momentum, variance, **kwargs):
        check_in_range("momentum", momentum, 0.0, 1.0)
        if variance not in VARIANCE_MODES:
            raise ValueError(
                f"`variance` must be one of {', '.join(map(repr, VARIANCE_MODES))}; "
                f"got {variance!r}."
            )
        super().__init__(learning_rate=learning_rate, **kwargs)
        self.momentum = float(momentum)
        self.variance = variance
        # Where statistics were added and not yet used by an `apply`: the
        # execution (eager, or the traced function) and replica of each call.
        self._statistics_pending = set()

    @property
    def value_independent_update(self):
        return self.variance == "moving_average"

    @property
    def value_independent_reason(self):
        if self.variance == "minibatch":
            return (
                "with variance='minibatch' it needs per-example statistics of the "
                "gradient it steps with, and IGT's estimate has none"
            )
        return None

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        minibatch = self.variance == "minibatch"
        self._momentums = [
            self.add_state_variable(v, "momentum" if minibatch else "mean") for v in var_list
        ]
        self._variances = [self.add_state_variable(v, "variance") for v in var_list]
        if not minibatch:
            return
        # The statistics for the next update, and (accumulating gradients) the
        # last call's share of them, which a step skipped by a loss scale drops.
        self._square_sums = [self.add_state_variable(v, "square_sum") for v in var_list]
        self._example_counts = [self._add_count(v, "example_count") for v in var_list]
        if self.gradient_accumulation_steps:
            self._last_square_sums = [self.add_state_variable(v, "last_square_sum") for v in var_list]
            self._last_example_counts = [self._add_count(v, "last_example_count") for v in var_list]
        self._statistics_step = self.add_variable(
            shape=(), initializer=keras.initializers.Constant(-1), dtype=self._iterations.dtype,
            name="statistics_step",
        )

    def _add_count(self, variable, name):
        with self.colocated_with(variable):
            return self.add_variable(
                shape=(),
                initializer="zeros",
                dtype=state_dtype(variable.dtype),
                name=f"{variable_path_name(variable)}_{name}",
            )

    def add_minibatch_statistics(self, square_sums, batch_size, trainable_variables=None):
        """Per-example gradient statistics for the next update (`variance="minibatch"`).

        Args:
            square_sums: for each trainable variable, Σₖ (∂ℓₖ/∂θ)² over the
                examples k of the batch, of the per-example losses ℓₖ whose
                mean is the training loss, before any loss scaling; `None` for
                a variable without a gradient.
            batch_size: the number of examples B.
            trainable_variables: the variables `square_sums` belong to
                (default: those the optimizer was built with).

        Call it before each `apply`, in the same execution: eagerly, or inside
        the same `tf.function` (an `apply` without statistics of its own is
        refused). Under a `tf.distribute` strategy, call it in replica context
        with the replica's own sums and count: they are summed across replicas,
        so B is the global batch. With `gradient_accumulation_steps` the
        statistics of the accumulated batches add up. Statistics of a step that
        `keras.optimizers.LossScaleOptimizer` skips are replaced by the next
        call's. `keras_momenta.MinibatchVarianceModel` calls this in every
        `fit` step.
        """
        if self.variance != "minibatch":
            raise ValueError(
                f"`add_minibatch_statistics` is for variance='minibatch'; this "
                f"{type(self).__name__} uses variance={self.variance!r}."
            )
        if trainable_variables is None:
            if not self.built:
                raise ValueError(
                    "Pass `trainable_variables` or build the optimizer first."
                )
            trainable_variables = self._trainable_variables
        trainable_variables = list(trainable_variables)
        square_sums = list(square_sums)
        if len(square_sums) != len(trainable_variables):
            raise ValueError(
                f"`square_sums` must have one entry (or None) for each of the "
                f"{len(trainable_variables)} trainable variables; got {len(square_sums)}."
            )
        for square_sum, variable in zip(square_sums, trainable_variables):
            if square_sum is not None and tuple(square_sum.shape) != tuple(variable.shape):
                raise ValueError(
                    f"`square_sums` for variable {variable_path_name(variable)!r} must "
                    f"have its shape {tuple(variable.shape)}; got {tuple(square_sum.shape)}."
                )
        if not self.built:
            self.refuse_building_in_replica()
            with keras.name_scope(self.name, caller=self):
                self.build(trainable_variables)
        indices = [self._get_variable_index(v) for v in trainable_variables]
        values = []
        for square_sum, variable, index in zip(square_sums, trainable_variables, indices):
            dtype = self._square_sums[index].dtype
            if square_sum is None:  # no examples for this variable
                values += [ops.zeros(variable.shape, dtype), ops.zeros((), dtype)]
            else:
                values += [ops.cast(square_sum, dtype), ops.cast(batch_size, dtype)]
        _backend.sum_across_replicas(self, values, lambda update, values: self._write_statistics(update, indices, values))
        self._statistics_pending.add(_backend.execution_context())

    def _write_statistics(self, update, indices, values):
        accumulating = bool(self.gradient_accumulation_steps)
        for position, index in enumerate(indices):
            new_sum, new_count = values[2 * position], values[2 * position + 1]

            def write(total, count, stamp, micro_step, new_sum, new_count, *last):
                # Statistics added at this same micro-step were not used: the
                # step was skipped (or statistics were added twice). Drop them.
                unused = ops.equal(ops.convert_to_tensor(stamp), ops.convert_to_tensor(micro_step))
                total_value, count_value = ops.convert_to_tensor(total), ops.convert_to_tensor(count)
                # A count of 0 marks the sum as used by an update (which
                # leaves the sum itself alone: one pass fewer over memory).
                total_value = ops.where(
                    ops.equal(count_value, 0), ops.zeros_like(total_value), total_value
                )
                if accumulating:
                    last_sum, last_count = last
                    dropped_sum, dropped_count = map(ops.convert_to_tensor, last)
                    kept_sum = ops.where(unused, total_value - dropped_sum, total_value)
                    kept_count = ops.where(unused, count_value - dropped_count, count_value)
                    last_sum.assign(new_sum)
                    last_count.assign(new_count)
                else:
                    kept_sum = ops.where(unused, ops.zeros_like(total_value), total_value)
                    kept_count = ops.where(unused, ops.zeros_like(count_value), count_value)
                total.assign(kept_sum + new_sum)
                count.assign(kept_count + new_count)

            last = (
                (self._last_square_sums[index], self._last_example_counts[index])
                if accumulating
                else ()
            )
            update(
                self._square_sums[index],
                write,
                self._example_counts[index],
                self._statistics_step,
                self._iterations,
                new_sum,
                new_count,
                *last,
            )
        update(
            self._statistics_step,
            lambda stamp, micro_step: stamp.assign(micro_step),
            self._iterations,
        )

    def apply(self, grads, trainable_variables=None):
        self.refuse_building_in_replica()
        if self.variance == "minibatch":
            context = _backend.execution_context()
            if context not in self._statistics_pending:
                raise ValueError(
                    f"{type(self).__name__}(variance='minibatch') needs the per-example "
                    f"gradient statistics of every batch, added in the same execution "
                    f"(eagerly, or in the same `tf.function`) before each `apply`, and "
                    f"was given none. Train with `model = "
                    f"keras_momenta.MinibatchVarianceModel(model)` before "
                    f"`compile`/`fit`, or call `optimizer.add_minibatch_statistics(...)` "
                    f"before each `apply` in a custom loop; or use "
                    f"variance='moving_average', which needs only the gradients."
                )
            self._statistics_pending.discard(context)
        return super().apply(grads, trainable_variables)

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        index = self._get_variable_index(variable)
        lr = ops.cast(learning_rate, dtype)
        # m moves every coordinate, so the update is dense in any case.
        gradient = _backend.to_dense(_backend.cast(gradient, dtype), variable.shape)
        estimate = (
            self._minibatch_estimate if self.variance == "minibatch" else self._moving_average_estimate
        )
        momentum, variance_of_m = estimate(gradient, index, dtype)
        direction = self._direction(momentum, variance_of_m)
        self.assign_sub(variable, ops.cast(ops.multiply(lr, direction), variable.dtype))

    def _moving_average_estimate(self, gradient, index, dtype):
        """Algorithm 2, lines 4 to 6: returns m and the variance of m."""
        mean, variance = self._momentums[index], self._variances[index]
        mu = constant(self.momentum, dtype)
        new_mean, new_variance, kappa = moving_average_statistics(
            mean, variance, gradient, mu, self.local_step(dtype)
        )
        self.assign(mean, new_mean)
        self.assign(variance, new_variance)
        return new_mean, self._scale_variance(kappa, new_variance, dtype)

    def _scale_variance(self, kappa, variance, dtype):
        return ops.multiply(kappa, variance)

    def _minibatch_estimate(self, gradient, index, dtype):
        """Algorithms 3 and 5, lines 3 to 5: returns m and s̄."""
        momentum, variance = self._momentums[index], self._variances[index]
        square_sum, count = self._square_sums[index], self._example_counts[index]
        mu = constant(self.momentum, dtype)
        new_variance = ops.add(
            ops.multiply(constant(self.momentum**2, dtype), variance),
            minibatch_variance(
                ops.convert_to_tensor(square_sum), ops.convert_to_tensor(count), gradient
            ),
        )
        new_momentum = summed_momentum(momentum, gradient, mu)
        self.assign(variance, new_variance)
        self.assign(momentum, new_momentum)
        self.assign(count, ops.zeros(count.shape, count.dtype))  # the sum is used
        return new_momentum, new_variance

    def get_config(self):
        config = super().get_config()
        config.update({"momentum": self.momentum, "variance": self.variance})
        return config


@keras.saving.register_keras_serializable(package="keras_momenta")
class MSVAG(_VarianceAdapted):
    """M-SVAG: momentum SGD with variance adaptation (Algorithms 2 and 3).

    For each coordinate, with gradient g at step t = 1, 2, ...:

        variance="moving_average" (Algorithm 2):
            m̃ ← μ·m̃ + (1 − μ)·g,  ṽ ← μ·ṽ + (1 − μ)·g²
            m = m̃/(1 − μᵗ),  v = ṽ/(1 − μᵗ)
            η² = κ(μ, t)·(v − m²)/m²
            κ(μ, t) = (1 − μ²ᵗ)(1 − μ)² / ((1 − μ²)(1 − μᵗ)²)      (Eq. 19)
        variance="minibatch" (Algorithm 3):
            ŝ = ((1/B)·Σₖ ∇ℓₖ² − g²)/(B − 1)       over the batch's B examples
            s̄ ← μ²·s̄ + ŝ,  m ← μ·m + g,  η² = s̄/m²
        then
            γ = 1/(1 + η²)
            θ ← θ − α·γ·m

    γ is the factor that minimises the expected squared distance between γ·m
    and the true momentum direction (Eq. 14/16): coordinates whose gradient is
    mostly noise take short steps. There is no ε: where m = 0 the update is 0,
    v − m² is never negative, and γ is always in [0, 1].

    `momentum=0` is SVAG. With moving averages it is then plain SGD, since a
    single gradient has v − m² = 0; the mini-batch estimate gives SVAG a real
    variance estimate (Eq. 16). Note the different step scales: the
    moving-average m is an average of gradients, the mini-batch m a sum
    (≈ g/(1 − μ)), as in the paper's algorithms.

    `variance="minibatch"` needs Σₖ ∇ℓₖ² for every variable:
    `keras_momenta.MinibatchVarianceModel` computes it in `fit`, and
    `add_minibatch_statistics` takes it in a custom loop.

    `released_code=True` (moving averages only) follows the authors' released
    TensorFlow code instead of Algorithm 2: s = (v − m²)/(1 − ρ) with
    ρ = min(κ(μ, t), 0.9999), and γ = m²/(m² + ρ·s) clipped to [0, 1]. Since
    E[v − m²] = (1 − κ)·σ² when the averaged gradients are iid, s is unbiased
    where the paper's v − m² underestimates σ², so η² is larger by 1/(1 − κ)
    (×1.06 for μ = 0.9 in the long run, ×2 at t = 2). The clipping changes
    nothing here, because v − m² is never negative.

    State per variable: m and v − m² (the bias-corrected averages, see
    `_moving_average_estimate`), or m, s̄, and this update's Σₖ∇ℓₖ² and B with
    `variance="minibatch"`; float32 for float16 and bfloat16 variables.

    Args:
        learning_rate: α > 0, a float, a `LearningRateSchedule` or a callable.
        momentum: μ in [0, 1), the momentum and averaging constant.
        variance: "moving_average" or "minibatch", the variance estimate.
        released_code: use the released code's variance estimate (above).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        learning_rate=0.01,
        momentum=0.9,
        variance="moving_average",
        released_code=False,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="msvag",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            variance=variance,
            **keras_arguments(locals()),
            **kwargs,
        )
        check_bool("released_code", released_code)
        if released_code and variance != "moving_average":
            raise ValueError(
                "`released_code` applies only to variance='moving_average' (the "
                f"released code has no mini-batch estimate); got variance={variance!r}."
            )
        self.released_code = released_code

    def _scale_variance(self, kappa, variance, dtype):
        if not self.released_code:
            return super()._scale_variance(kappa, variance, dtype)
        return released_variance_of_mean(kappa, variance, constant(RELEASED_RHO_CAP, dtype))

    def _direction(self, m, variance_of_m):
        return msvag_direction(m, variance_of_m)

    def get_config(self):
        config = super().get_config()
        config.update({"released_code": self.released_code})
        return config


@keras.saving.register_keras_serializable(package="keras_momenta")
class AdamStar(_VarianceAdapted):
    """ADAM*: sign descent with variance adaptation (Algorithms 4 and 5).

    The relative variance η² is estimated exactly as in `MSVAG` (moving
    averages with κ(μ, t) of Eq. 19, or the mini-batch estimate), then

        γ = (1 + η²)^(−1/2)
        θ ← θ − α·γ·sign(m)

    which is m/√(m² + var[m]): with moving averages, Adam with β₁ = β₂ = μ and
    ε = 0, except for the factor κ(μ, t) on the variance. γ approximates the
    optimal factor erf(1/(√2·η)) for the sign (Eq. 15, Figure 5). There is no
    ε: where m = 0 the update is 0.

    State per variable: as for `MSVAG`.

    Args:
        learning_rate: α > 0, a float, a `LearningRateSchedule` or a callable.
        momentum: μ in [0, 1), the momentum and averaging constant.
        variance: "moving_average" or "minibatch", the variance estimate.
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        learning_rate=1e-3,
        momentum=0.9,
        variance="moving_average",
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="adamstar",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            variance=variance,
            **keras_arguments(locals()),
            **kwargs,
        )

    def _direction(self, m, variance_of_m):
        return adamstar_direction(m, variance_of_m)


# The update maths: functions of tensors in `keras.ops`, shared by every front end.


def summed_momentum(momentum, gradient, mu):
    """μ·m + g, the momentum of M-SSD and of the mini-batch variants."""
    return ops.add(ops.multiply(mu, momentum), gradient)


def moving_average_statistics(mean, excess, gradient, mu, step):
    """Algorithm 2's averages after gradient g at step t; returns (m, v − m², κ(μ, t)).

    The state is the bias-corrected m = m̃/(1 − μᵗ) and v − m², updated in
    West's (1979) weighted form, with weight w = (1 − μ)/(1 − μᵗ) on the new
    gradient. It equals the paper's averages in exact arithmetic, but v − m²
    is exactly 0 at t = 1 and for a constant gradient and is never negative,
    where the difference of two averages would be rounding noise (amplified
    10⁴-fold by the released code's 1/(1 − ρ)).

        m ← m + w·(g − m)
        v − m² ← (1 − w)·(v − m²) + w/(1 − w)·(g − m)²    with the new m

    (g − m_new = (1 − w)(g − m_old)). Reading only the new m lets XLA update
    m, v − m² and θ in place; a form that reads the old m after m is written
    makes it copy both state tensors every step.
    """
    mu_t = ops.power(mu, step)
    weight = ops.divide(1 - mu, 1 - mu_t)
    complement = ops.divide(mu - mu_t, 1 - mu_t)  # 1 − w, exactly 0 at t = 1
    new_mean = ops.add(mean, ops.multiply(weight, ops.subtract(gradient, mean)))
    residual = ops.subtract(gradient, new_mean)
    new_excess = ops.add(
        ops.multiply(complement, excess),
        ops.multiply(_backend.divide_no_nan(weight, complement), ops.square(residual)),
    )
    return new_mean, new_excess, variance_factor(mu, mu_t)


def variance_factor(mu, mu_t):
    """κ(μ, t) = (1 − μ²ᵗ)(1 − μ)² / ((1 − μ²)(1 − μᵗ)²), Eq. 19, from μᵗ."""
    return ops.divide(
        ops.multiply(1 - ops.square(mu_t), ops.square(1 - mu)),
        ops.multiply(1 - ops.square(mu), ops.square(1 - mu_t)),
    )


def released_variance_of_mean(kappa, excess, cap):
    """The released code's variance of m: ρ/(1 − ρ)·(v − m²), ρ = min(κ, cap)."""
    rho = _backend.minimum(kappa, cap)
    return ops.multiply(ops.divide(rho, 1 - rho), excess)


def minibatch_variance(square_sum, count, gradient):
    """ŝ, the unbiased variance of the batch mean: ((1/B)·Σₖ∇ℓₖ² − g²)/(B − 1).

    A batch of one example tells nothing about the variance: ŝ = 0 then.
    """
    spread = _backend.maximum(
        ops.subtract(_backend.divide_no_nan(square_sum, count), ops.square(gradient)), 0
    )
    return ops.where(count > 1, _backend.divide_no_nan(spread, count - 1), ops.zeros_like(spread))


def msvag_direction(m, variance_of_m):
    """γ·m with γ = 1/(1 + η²) = m²/(m² + var[m]); 0 where m = 0."""
    m2 = ops.square(m)
    return ops.multiply(_backend.divide_no_nan(m2, ops.add(m2, variance_of_m)), m)


def adamstar_direction(m, variance_of_m):
    """γ·sign(m) with γ = (1 + η²)^(−1/2) = |m|/√(m² + var[m]); 0 where m = 0."""
    return _backend.divide_no_nan(m, ops.sqrt(ops.add(ops.square(m), variance_of_m)))
