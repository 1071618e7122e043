"""Optimizers for `tf_keras` (Keras 2), the Keras of TF official-models.

tf-models-official builds its optimizers with `tf_keras` and accepts only
`tf_keras` optimizers, so the Keras 3 classes of this package cannot be
given to it. The classes here are `tf_keras` legacy optimizers (the kind
official-models builds by default, and the only kind its EMA wrapper takes)
whose updates are computed by the same update-maths functions as the Keras 3
classes, so the formulas exist once.

`register_optimizers()` makes them selectable by name in an official-models
`OptimizationConfig` (`optimizer: {type: expectigrad, expectigrad: {...}}`).

Every optimizer of the package is here: `Expectigrad`, `MSSD`, `MSVAG`,
`AdamStar` (moving-average variance), `IGT`, `AM1SGD`, `AM2SGD`. The answers
of IGT and of the option II averages are evaluated and exported in
official-models through `keras_momenta.official_models`. The mini-batch
variance of M-SVAG and ADAM* needs per-example gradients, which only the
Keras 3 classes collect.

Differences from the Keras 3 classes: state is kept in the variable's dtype
(`tf_keras` slots cannot have another: float16 variables get float16 state;
under mixed precision the variables are float32), so Expectigrad's nonzero
counter is a float count and its float32 sum of squares carries no
rounding-error term: for float32 variables both stop growing after about
2²⁴ steps, where the Keras 3 class keeps counting. Row-sparse gradients are
applied as their dense equivalent, the result the Keras 3 classes give them
too, at the cost of a dense update.
"""

import dataclasses
import functools
import inspect
import random

import tensorflow as tf

from keras_momenta import _hash
from keras_momenta import amortized_nesterov as _amortized_nesterov
from keras_momenta import dissecting_adam as _dissecting_adam
from keras_momenta import expectigrad as _expectigrad
from keras_momenta import igt as _igt
from keras_momenta._base import check_bool, check_in_range, check_learning_rate, check_one_of

try:
    import tf_keras
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_momenta.official needs tf_keras (Keras 2), the Keras of TF "
        "official-models: `pip install tf-keras` matching your TensorFlow."
    ) from error

# How tf_keras keys an optimizer's state by variable (distributed ones included).
from tf_keras.src.optimizers.legacy.optimizer_v2 import _var_key  # noqa: E402


class _LegacyOptimizer(tf_keras.optimizers.legacy.Optimizer):
    """What the classes here share: the learning rate (a float or a
    `tf_keras` schedule), sparse gradients applied densely, the config."""

    _HAS_AGGREGATE_GRAD = True
    # The constructor arguments besides the learning rate, kept as attributes.
    _HYPERPARAMETERS = ()

    def __init__(self, learning_rate, name, **kwargs):
        if not isinstance(learning_rate, tf_keras.optimizers.schedules.LearningRateSchedule):
            check_learning_rate(learning_rate)
        super().__init__(name, **kwargs)
        self._set_hyper("learning_rate", learning_rate)

    def _step_inputs(self, var):
        """The variable's dtype, the learning rate and the 1-based step in it."""
        dtype = var.dtype.base_dtype
        return dtype, self._decayed_lr(dtype), tf.cast(self.iterations + 1, dtype)

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        # Duplicates are summed before this is called; the Keras 3 classes
        # give a row-sparse gradient the result of its dense equivalent.
        dense = tf.scatter_nd(tf.expand_dims(indices, -1), grad, tf.shape(var, out_type=indices.dtype))
        return self._resource_apply_dense(dense, var, apply_state)

    def get_config(self):
        config = super().get_config()
        config["learning_rate"] = self._serialize_hyperparameter("learning_rate")
        config.update({name: getattr(self, name) for name in self._HYPERPARAMETERS})
        return config


class Expectigrad(_LegacyOptimizer):
    """Expectigrad (Daley & Amato, 2020, Algorithm 1) for `tf_keras`.

    The update, its arguments and their allowed ranges are those of
    `keras_momenta.Expectigrad` (see its docstring), computed by the same
    functions (`keras_momenta.expectigrad.accumulate_squares`,
    `normalised_step`, `bias_corrected_rate`). `**kwargs` are `tf_keras`'s
    legacy optimizer arguments (`clipnorm`, `clipvalue`, `global_clipnorm`).
    """

    _HYPERPARAMETERS = ("beta", "epsilon", "sparse_counter", "momentum")

    def __init__(
        self,
        learning_rate=1e-3,
        beta=0.9,
        epsilon=1e-8,
        sparse_counter=True,
        momentum="outer",
        name="Expectigrad",
        **kwargs,
    ):
        _expectigrad.check_arguments(beta, epsilon, sparse_counter, momentum)
        super().__init__(learning_rate, name, **kwargs)
        self.beta = float(beta)
        self.epsilon = float(epsilon)
        self.sparse_counter = sparse_counter
        self.momentum = momentum

    def _create_slots(self, var_list):
        for variable in var_list:
            self.add_slot(variable, "sum")
            if self.sparse_counter:
                self.add_slot(variable, "count")
            if self.beta > 0:
                self.add_slot(variable, "momentum")

    def _resource_apply_dense(self, grad, var, apply_state=None):
        dtype, learning_rate, step = self._step_inputs(var)
        beta = tf.constant(self.beta, dtype)
        epsilon = tf.constant(self.epsilon, dtype)
        running_sum = self.get_slot(var, "sum")
        count = self.get_slot(var, "count") if self.sparse_counter else None
        new_sum, *new_count = _expectigrad.accumulate_squares(grad, running_sum, count=count)
        n = new_count[0] if new_count else step
        updates = [running_sum.assign(new_sum)] + ([count.assign(n)] if new_count else [])

        if self.beta == 0:
            step_taken = _expectigrad.normalised_step(grad, new_sum, n, epsilon, learning_rate)
            return tf.group(*updates, var.assign_sub(step_taken))
        momentum = self.get_slot(var, "momentum")
        if self.momentum == "outer":
            impulse = _expectigrad.normalised_step(grad, new_sum, n, epsilon, 1 - beta)
        else:
            impulse = (1 - beta) * grad
        new_momentum = beta * momentum + impulse
        rate = (
            learning_rate
            if self.momentum == "inner"
            else _expectigrad.bias_corrected_rate(learning_rate, beta, step)
        )
        if self.momentum == "outer":
            step_taken = rate * new_momentum
        else:
            step_taken = _expectigrad.normalised_step(new_momentum, new_sum, n, epsilon, rate)
        return tf.group(*updates, momentum.assign(new_momentum), var.assign_sub(step_taken))


class MSSD(_LegacyOptimizer):
    """M-SSD (Balles & Hennig, 2018, Algorithm 1) for `tf_keras`:
    m ← μ·m + g, θ ← θ − α·sign(m); SSD with `momentum=0`. As
    `keras_momenta.MSSD`, computed by `keras_momenta.dissecting_adam.summed_momentum`.
    """

    _HYPERPARAMETERS = ("momentum",)

    def __init__(self, learning_rate=1e-3, momentum=0.9, name="MSSD", **kwargs):
        check_in_range("momentum", momentum, 0.0, 1.0)
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = float(momentum)

    def _create_slots(self, var_list):
        if self.momentum > 0:
            for variable in var_list:
                self.add_slot(variable, "momentum")

    def _resource_apply_dense(self, grad, var, apply_state=None):
        dtype, learning_rate, _ = self._step_inputs(var)
        if self.momentum == 0:
            return var.assign_sub(learning_rate * tf.sign(grad))
        momentum = self.get_slot(var, "momentum")
        new_momentum = _dissecting_adam.summed_momentum(momentum, grad, tf.constant(self.momentum, dtype))
        return tf.group(momentum.assign(new_momentum), var.assign_sub(learning_rate * tf.sign(new_momentum)))


class _VarianceAdapted(_LegacyOptimizer):
    """M-SVAG and ADAM* with the moving-average variance estimate
    (`keras_momenta.dissecting_adam.moving_average_statistics`, Algorithm 2)."""

    _HYPERPARAMETERS = ("momentum", "variance")

    def __init__(self, learning_rate, momentum, variance, name, **kwargs):
        check_in_range("momentum", momentum, 0.0, 1.0)
        check_one_of("variance", variance, _dissecting_adam.VARIANCE_MODES)
        if variance == "minibatch":
            raise ValueError(
                "`variance='minibatch'` needs per-example gradients, which only the "
                "Keras 3 classes collect (keras_momenta.MinibatchVarianceModel); with "
                "tf_keras use variance='moving_average'."
            )
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = float(momentum)
        self.variance = variance

    def _create_slots(self, var_list):
        for variable in var_list:
            self.add_slot(variable, "momentum")
            self.add_slot(variable, "variance")

    def _resource_apply_dense(self, grad, var, apply_state=None):
        dtype, learning_rate, step = self._step_inputs(var)
        mean, excess = self.get_slot(var, "momentum"), self.get_slot(var, "variance")
        new_mean, new_excess, kappa = _dissecting_adam.moving_average_statistics(
            mean, excess, grad, tf.constant(self.momentum, dtype), step
        )
        direction = self._direction(new_mean, self._variance_of_mean(kappa, new_excess, dtype))
        return tf.group(
            mean.assign(new_mean), excess.assign(new_excess), var.assign_sub(learning_rate * direction)
        )

    def _variance_of_mean(self, kappa, excess, dtype):
        return kappa * excess


class MSVAG(_VarianceAdapted):
    """M-SVAG (Balles & Hennig, 2018, Algorithm 2) for `tf_keras`, as
    `keras_momenta.MSVAG` with `variance="moving_average"` (and
    `released_code`), computed by `keras_momenta.dissecting_adam`'s
    `moving_average_statistics` and `msvag_direction`."""

    _HYPERPARAMETERS = ("momentum", "variance", "released_code")

    def __init__(
        self, learning_rate=0.01, momentum=0.9, variance="moving_average", released_code=False,
        name="MSVAG", **kwargs,
    ):
        check_bool("released_code", released_code)
        super().__init__(learning_rate, momentum, variance, name, **kwargs)
        self.released_code = released_code

    def _variance_of_mean(self, kappa, excess, dtype):
        if not self.released_code:
            return super()._variance_of_mean(kappa, excess, dtype)
        cap = tf.constant(_dissecting_adam.RELEASED_RHO_CAP, dtype)
        return _dissecting_adam.released_variance_of_mean(kappa, excess, cap)

    def _direction(self, m, variance_of_m):
        return _dissecting_adam.msvag_direction(m, variance_of_m)


class AdamStar(_VarianceAdapted):
    """ADAM* (Balles & Hennig, 2018, Section 5) for `tf_keras`, as
    `keras_momenta.AdamStar` with `variance="moving_average"`, computed by
    `keras_momenta.dissecting_adam`'s `moving_average_statistics` and
    `adamstar_direction`."""

    def __init__(self, learning_rate=1e-3, momentum=0.9, variance="moving_average", name="AdamStar", **kwargs):
        super().__init__(learning_rate, momentum, variance, name, **kwargs)

    def _direction(self, m, variance_of_m):
        return _dissecting_adam.adamstar_direction(m, variance_of_m)


# tf_keras legacy optimizers whose step adds to the variable an amount that
# does not read its value: IGT applies them to a zero variable to collect Δθ.
_LEGACY_INNERS = {
    "sgd": tf_keras.optimizers.legacy.SGD,
    "adam": tf_keras.optimizers.legacy.Adam,
    "adamax": tf_keras.optimizers.legacy.Adamax,
    "rmsprop": tf_keras.optimizers.legacy.RMSprop,
    "adagrad": tf_keras.optimizers.legacy.Adagrad,
    "adadelta": tf_keras.optimizers.legacy.Adadelta,
}
_VALUE_INDEPENDENT = ("expectigrad", "mssd", "msvag", "adamstar")


class _OutputPoint:
    """Optimizers whose answer is not the model's point: `_ANSWER_SLOT` names
    the slot that holds it (None: the answer is the model's point).

    Unlike the Keras 3 classes' output-point contract (per-variable runs,
    changes from outside detected), the answer is swapped in and out
    explicitly: `keras_momenta.official_models` does it around evaluation
    and for export."""

    _ANSWER_SLOT = None

    def evaluation_weights(self, var_list):
        """The answer for each variable of `var_list` (its own value before
        the optimizer has state for it)."""
        return [
            self.get_slot(v, self._ANSWER_SLOT).read_value() if self._has_answer(v) else tf.convert_to_tensor(v)
            for v in var_list
        ]

    def swap_answer_weights(self, var_list):
        """Exchange the answer and the model variables' values: the answer
        goes into the model (for evaluation, a checkpoint or an export); a
        second call puts the training point back. Call it between steps."""
        for variable in var_list:
            if self._has_answer(variable):
                _swap(variable, self.get_slot(variable, self._ANSWER_SLOT))

    def _has_answer(self, variable):
        return self._ANSWER_SLOT is not None and self._ANSWER_SLOT in self._slots.get(_var_key(variable), {})


class IGT(_OutputPoint, _LegacyOptimizer):
    """Implicit gradient transport (Arnold et al., 2019) around a `tf_keras`
    legacy optimizer.

    The update of `keras_momenta.IGT` (see its docstring): with γₜ from
    `tail_fraction` c (γ₁ = 0), v ← γₜ·v + (1 − γₜ)·g, Δθ = the inner
    optimizer's step for v, θ ← θ + Δθ, and the model variable ← θ +
    γₜ₊₁/(1 − γₜ₊₁)·Δθ, computed by the same functions
    (`keras_momenta.igt.transport_momentum`, `transport`, `shifted_point`).
    Δθ is what the inner optimizer adds to a variable that holds zero, so it
    is exact and the inner optimizer's own kernels do the work.

    The answer is θ, not the model variable: `evaluation_weights` reads it
    and `swap_answer_weights` exchanges it with the model variables (twice
    restores them), for evaluating and exporting it.

    Differences from `keras_momenta.IGT`: t is the optimizer's step count, and
    θ starts from each variable's value when the optimizer creates its state
    (the first step, or a checkpoint restore), so a variable that skips steps
    or is changed from outside does not start a run of its own; a variable's
    constraint is applied to θ after each step; sparse gradients are applied
    densely.

    Args:
        inner_optimizer: a new `tf_keras` legacy SGD, Adam, Adamax, RMSprop,
            Adagrad or Adadelta, or an `Expectigrad`, `MSSD`, `MSVAG` or
            `AdamStar` of this module; or one by name (`"sgd"`), or as
            {"type": name, name: {its arguments}} (the form of an
            official-models config).
        tail_fraction: c in (0, 1], as in `keras_momenta.IGT`.
        nonnegative_momentum: clip γₜ at 0, as in `keras_momenta.IGT`.
        learning_rate: the inner optimizer's learning rate (a float or a
            schedule), when it is given by name or config; official-models
            passes it. None keeps the inner optimizer's.
        **kwargs: `tf_keras`'s legacy optimizer arguments (`clipnorm`,
            `clipvalue`, `global_clipnorm`), applied to the raw gradient.
    """

    _HYPERPARAMETERS = ("tail_fraction", "nonnegative_momentum")
    _ANSWER_SLOT = "true_param"

    def __init__(
        self,
        inner_optimizer="sgd",
        tail_fraction=1.0,
        nonnegative_momentum=False,
        learning_rate=None,
        name="IGT",
        **kwargs,
    ):
        check_in_range("tail_fraction", tail_fraction, 0.0, 1.0, low_closed=False, high_closed=True)
        check_bool("nonnegative_momentum", nonnegative_momentum)
        inner = _inner_optimizer(inner_optimizer, learning_rate)
        tf_keras.optimizers.legacy.Optimizer.__init__(self, name, **kwargs)
        self.inner_optimizer = inner
        self._track_trackable(inner, name="inner_optimizer")
        self.tail_fraction = float(tail_fraction)
        self.nonnegative_momentum = nonnegative_momentum

    def _create_slots(self, var_list):
        for variable in var_list:
            self.add_slot(variable, "estimate")
            self.add_slot(variable, "true_param", initializer=variable.read_value())
            self.add_slot(variable, "step_taken")
        collectors = [self.get_slot(v, "step_taken") for v in var_list]
        self.inner_optimizer._create_all_weights(collectors)
        # Checkpoints save an optimizer's slots of model variables, not of
        # other slots: the inner optimizer's state is also registered as
        # IGT's slots of the model variables, and restored as such.
        for variable, collector in zip(var_list, collectors):
            slots = self._slots[_var_key(variable)]
            for name in self.inner_optimizer.get_slot_names():
                slot_name, inner_slot = f"inner_{name}", self.inner_optimizer.get_slot(collector, name)
                restored = slots.get(slot_name)
                if restored is inner_slot:
                    continue
                slots[slot_name] = inner_slot
                if slot_name not in self._slot_names:
                    self._slot_names.append(slot_name)
                if restored is None:
                    self._restore_slot_variable(slot_name=slot_name, variable=variable, slot_variable=inner_slot)
                else:
                    # An eager restore created the slot before the inner optimizer's.
                    inner_slot.assign(restored)
                    self._weights = [w for w in self._weights if w is not restored]

    def _resource_apply_dense(self, grad, var, apply_state=None):
        dtype, _, step = self._step_inputs(var)
        _, complement = _igt.transport_momentum(step, self.tail_fraction, self.nonnegative_momentum, dtype)
        next_gamma, next_complement = _igt.transport_momentum(
            step + 1, self.tail_fraction, self.nonnegative_momentum, dtype
        )
        estimate, theta, collector = (self.get_slot(var, n) for n in ("estimate", "true_param", "step_taken"))
        new_estimate = _igt.transport(estimate, grad, complement)  # v starts at 0 and γ₁ = 0: v₁ = g
        with tf.control_dependencies([estimate.assign(new_estimate), collector.assign(tf.zeros_like(collector))]):
            inner_step = self.inner_optimizer._resource_apply_dense(new_estimate, collector)
        with tf.control_dependencies([inner_step]):
            step_taken = tf.identity(collector.read_value())
        new_theta = theta + step_taken
        if var.constraint is not None:
            new_theta = var.constraint(new_theta)
        shifted = _igt.shifted_point(new_theta, step_taken, next_gamma, next_complement)
        return tf.group(theta.assign(new_theta), var.assign(shifted))

    def _distributed_apply(self, distribution, grads_and_vars, apply_state, name):
        applied = super()._distributed_apply(distribution, grads_and_vars, apply_state, name)
        # The inner optimizer's counter drives its schedule and bias corrections.
        with tf.control_dependencies([applied]):
            counted = self.inner_optimizer.iterations.assign_add(1, read_value=False)
        return applied if tf.executing_eagerly() else counted

    # The learning rate is the inner optimizer's.
    def _decayed_lr(self, var_dtype):
        return self.inner_optimizer._decayed_lr(var_dtype)

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, value):
        self.inner_optimizer.learning_rate = value

    def get_config(self):
        config = tf_keras.optimizers.legacy.Optimizer.get_config(self)
        config.update({name: getattr(self, name) for name in self._HYPERPARAMETERS})
        config["inner_optimizer"] = {
            "class_name": type(self.inner_optimizer).__name__,
            "config": self.inner_optimizer.get_config(),
        }
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner = config.pop("inner_optimizer")
        classes = {c.__name__: c for c in [*_LEGACY_INNERS.values(), *OPTIMIZERS.values()]}
        inner = classes[inner["class_name"]].from_config(inner["config"])
        return cls(inner, **config)


def _swap(variable, other):
    """Exchange the values of two variables (on every replica)."""

    def exchange(var, other):
        value = tf.identity(var.read_value())
        with tf.control_dependencies([value]):
            var.assign(other.read_value())
        other.assign(value)

    strategy = getattr(variable, "_distribute_strategy", None) or tf.distribute.get_strategy()
    with strategy.scope():
        strategy.extended.update(variable, exchange, args=(other,), group=True)


def _inner_optimizer(spec, learning_rate):
    """IGT's inner optimizer from an instance, a name or {"type": name, name: arguments}."""
    if isinstance(spec, tf_keras.optimizers.legacy.Optimizer):
        if learning_rate is not None:
            raise ValueError(
                "`learning_rate` is given both to IGT and to its inner optimizer "
                "instance; set it on one of them."
            )
        inner = spec
    else:
        if isinstance(spec, str):
            key, arguments = spec, {}
        elif isinstance(spec, dict) and "type" in spec:
            key, arguments = spec["type"], dict(spec.get(spec["type"]) or {})
        else:
            raise ValueError(
                "`inner_optimizer` must be a tf_keras legacy optimizer, a name "
                f"({', '.join(sorted([*_LEGACY_INNERS, *_VALUE_INDEPENDENT]))}) or "
                f"{{'type': name, name: {{arguments}}}}; got {spec!r}."
            )
        classes = {**_LEGACY_INNERS, **{k: OPTIMIZERS[k] for k in _VALUE_INDEPENDENT}}
        if key not in classes:
            raise ValueError(
                f"`inner_optimizer` {key!r} is not supported by IGT; supported: {', '.join(sorted(classes))}."
            )
        arguments = {name: value for name, value in arguments.items() if value is not None}
        if learning_rate is not None:
            arguments["learning_rate"] = learning_rate
        inner = classes[key](**arguments)
    supported = (*_LEGACY_INNERS.values(), *(OPTIMIZERS[k] for k in _VALUE_INDEPENDENT))
    if type(inner) not in supported:
        raise ValueError(
            f"`inner_optimizer` {type(inner).__qualname__} is not supported by IGT: it needs a "
            f"step that adds an amount independent of the parameter's value. Supported: "
            f"{', '.join(c.__name__ for c in supported)}."
        )
    for argument in ("clipnorm", "clipvalue", "global_clipnorm"):
        if getattr(inner, argument, None):
            raise ValueError(f"`{argument}` is set on the inner optimizer; set it on IGT, which applies it to the raw gradient.")
    if inner._iterations is not None or inner._slots:
        raise ValueError("`inner_optimizer` must be new: it has already created its state.")
    return inner


class AM1SGD(_OutputPoint, _LegacyOptimizer):
    """AM1-SGD (Zhou et al., 2020, Algorithm 2) for `tf_keras`.

    The update of `keras_momenta.AM1SGD` (see its docstring): x ← x − η·g,
    the block's offset T accumulates the iterates, and every m-th step
    x ← x + β·T/m and x̃ ← x̃ + T/m; computed by the same functions
    (`keras_momenta.amortized_nesterov.sgd_iterate`, `amortized_step`,
    `nesterov_point`). Option II's answer is the average x̃:
    `evaluation_weights` reads it and `swap_answer_weights` exchanges it
    with the model variables (`keras_momenta.official_models` evaluates and
    exports it in official-models).

    Differences from `keras_momenta.AM1SGD`: the blocks count the
    optimizer's steps (a variable that skips steps, or is changed from
    outside, does not start a run of its own); a variable's constraint is
    applied by tf_keras to the model variable only; no `restart()`; sparse
    gradients are applied densely.
    """

    _HYPERPARAMETERS = ("momentum", "amortization", "option")

    def __init__(self, learning_rate=0.1, momentum=0.9, amortization=5, option="II", name="AM1SGD", **kwargs):
        check_in_range("momentum", momentum, 0.0, 1.0)
        _amortized_nesterov.check_amortization(amortization)
        _amortized_nesterov.check_option(option)
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = float(momentum)
        self.amortization = int(amortization)
        self.option = option
        self._ANSWER_SLOT = "average" if option == "II" else None

    def _create_slots(self, var_list):
        for variable in var_list:
            self.add_slot(variable, "average", initializer=variable.read_value())
            if self.amortization > 1:
                self.add_slot(variable, "block_offset")

    def _resource_apply_dense(self, grad, var, apply_state=None):
        dtype, learning_rate, _ = self._step_inputs(var)
        step = self.iterations + 1
        beta = tf.constant(self.momentum, dtype)
        average = self.get_slot(var, "average")
        x0 = var.read_value()
        x = _amortized_nesterov.sgd_iterate(x0, grad, learning_rate)
        fresh = tf.equal(step, 1)
        if self.amortization == 1:
            new_point = _amortized_nesterov.nesterov_point(x, tf.where(fresh, x0, average), beta)
            return tf.group(average.assign(x), var.assign(new_point))
        offset = self.get_slot(var, "block_offset")
        position = step % self.amortization
        new_offset, new_point, new_average = _amortized_nesterov.amortized_step(
            x,
            offset,
            average,
            tf.where(fresh, x0, average),
            tf.equal(position, 1),
            tf.equal(position, 0),
            fresh,
            beta,
            self.amortization,
        )
        return tf.group(offset.assign(new_offset), average.assign(new_average), var.assign(new_point))


class AM2SGD(_OutputPoint, _LegacyOptimizer):
    """AM2-SGD (Zhou et al., 2020, Algorithm 4) for `tf_keras`.

    The update of `keras_momenta.AM2SGD` (see its docstring): a table φ of m
    points per variable, all starting at the variable's value;
    φ_{jₖ} ← x − η·g, x ← φ_{jₖ}(new) + β·(φ_{jₖ₊₁} − φ_{jₖ}(old)) and (option
    II) the mean φ̄ follows, with jₖ the same hash of (`seed`, k) as the
    Keras 3 class (`keras_momenta._hash.point_index`), computed by
    `keras_momenta.amortized_nesterov`'s `sgd_iterate`, `table_point` and
    `table_mean`. Option II's answer is φ̄: `evaluation_weights`,
    `swap_answer_weights`, and `keras_momenta.official_models` in
    official-models. The seed is an optimizer variable: checkpoints restore
    the index sequence.

    Differences from `keras_momenta.AM2SGD`: k is the optimizer's step
    count, and the table starts from each variable's value when the
    optimizer creates its state (a variable changed from outside does not
    restart its run); a variable's constraint is applied by tf_keras to the
    model variable only; no `restart()`; sparse gradients are applied
    densely. `seed=None` draws one.
    """

    _HYPERPARAMETERS = ("momentum", "amortization", "option", "seed")

    def __init__(
        self, learning_rate=0.1, momentum=0.9, amortization=5, option="II", seed=None, name="AM2SGD", **kwargs
    ):
        check_in_range("momentum", momentum, 0.0, 1.0)
        _amortized_nesterov.check_amortization(amortization)
        _amortized_nesterov.check_option(option)
        _amortized_nesterov.check_seed(seed)
        super().__init__(learning_rate, name, **kwargs)
        self.momentum = float(momentum)
        self.amortization = int(amortization)
        self.option = option
        self.seed = random.randint(0, _hash.MASK32) if seed is None else int(seed)
        self._ANSWER_SLOT = "table_mean" if option == "II" else None
        self._seed_bits = None

    def _create_slots(self, var_list):
        if self._seed_bits is None:
            # The seed's 32 bits in an int32, saved with the optimizer.
            with self._distribution_strategy_scope():
                self._seed_bits = self.add_weight(
                    "seed_bits",
                    shape=[],
                    dtype=tf.int32,
                    initializer=tf_keras.initializers.Constant(_hash.as_int32_bits(self.seed)),
                    trainable=False,
                    aggregation=tf.VariableAggregation.ONLY_FIRST_REPLICA,
                )
        for variable in var_list:
            value = variable.read_value()
            self.add_slot(variable, "point_table", tf.tile(value[None], [self.amortization] + [1] * value.shape.rank))
            if self.option == "II":
                self.add_slot(variable, "table_mean", value)

    def _point_index(self, step):
        if self.amortization == 1:
            return tf.zeros((), tf.int32)
        return _hash.point_index(self._seed_bits, step, self.amortization)

    def _resource_apply_dense(self, grad, var, apply_state=None):
        dtype, learning_rate, _ = self._step_inputs(var)
        j, j_next = self._point_index(self.iterations), self._point_index(self.iterations + 1)
        table = self.get_slot(var, "point_table")
        old, following = tf.gather(table, j), tf.gather(table, j_next)
        new = _amortized_nesterov.sgd_iterate(var.read_value(), grad, learning_rate)
        # φ_{jₖ₊₁} is read from the updated table: the new entry if jₖ₊₁ = jₖ.
        following = tf.where(tf.equal(j_next, j), new, following)
        new_point = _amortized_nesterov.table_point(new, old, following, tf.constant(self.momentum, dtype))
        updates = [table.scatter_update(tf.IndexedSlices(new[None], j[None])), var.assign(new_point)]
        if self.option == "II":
            mean = self.get_slot(var, "table_mean")
            size = tf.constant(self.amortization, dtype)
            updates.append(mean.assign(_amortized_nesterov.table_mean(mean, new, old, size)))
        return tf.group(*updates)


# ------------------------------------------------------- official-models registry

# The `type` names of an official-models optimizer config.
OPTIMIZERS = {
    "expectigrad": Expectigrad,
    "mssd": MSSD,
    "msvag": MSVAG,
    "adamstar": AdamStar,
    "igt": IGT,
    "am1sgd": AM1SGD,
    "am2sgd": AM2SGD,
}


def register_optimizers():
    """Make the optimizers here selectable in TF official-models configs.

    Registers each class of `OPTIMIZERS` with
    `official.modeling.optimization.register_optimizer_cls` (as a legacy
    optimizer, the kind `OptimizerFactory.build_optimizer` builds by
    default) and adds to official-models' `OptimizerConfig` one field per
    optimizer, a config dataclass whose fields are the class's arguments with
    their defaults, so that an experiment's YAML can say

        optimizer: {type: expectigrad, expectigrad: {beta: 0.9}}

    Call it before experiment configs are built (before
    `exp_factory.get_exp_config`): configs built earlier lack the fields.
    Calling it again does nothing. Returns {type name: config dataclass}.
    """
    from official.modeling.optimization import optimizer_factory
    from official.modeling.optimization.configs import optimization_config

    configs = {}
    for key, optimizer_class in OPTIMIZERS.items():
        registered = optimizer_factory.LEGACY_OPTIMIZERS_CLS.get(key)
        if registered is None:
            optimizer_factory.register_optimizer_cls(key, optimizer_class, use_legacy_optimizer=True)
        elif registered is not optimizer_class:
            raise ValueError(
                f"official-models already has an optimizer named {key!r} "
                f"({registered.__module__}.{registered.__qualname__})."
            )
        configs[key] = _config_dataclass(optimizer_class)
    _add_config_fields(optimization_config.OptimizerConfig, configs)
    return configs


@functools.lru_cache(maxsize=None)
def _config_dataclass(optimizer_class):
    """An official-models config dataclass of `optimizer_class`'s arguments
    (besides the learning rate, which official-models passes itself)."""
    from official.modeling.optimization.configs import optimizer_config

    fields = [
        (name, type(parameter.default), dataclasses.field(default=parameter.default))
        for name, parameter in inspect.signature(optimizer_class).parameters.items()
        if name != "learning_rate" and parameter.kind is inspect.Parameter.POSITIONAL_OR_KEYWORD
    ]
    config_class = dataclasses.make_dataclass(
        f"{optimizer_class.__name__}Config", fields, bases=(optimizer_config.BaseOptimizerConfig,)
    )
    config_class.__module__ = __name__
    config_class.__doc__ = f"Config of `keras_momenta.official.{optimizer_class.__name__}` for TF official-models."
    return config_class


def _add_config_fields(config_class, new_fields):
    """Give every instance of the official-models config dataclass
    `config_class` the fields {name: config dataclass}, defaults included.

    Experiment configs create their `OptimizerConfig` inside official-models,
    so the fields are added to that class itself: annotations (from which
    official-models' `Config` finds a field's type when a dict overrides it)
    and an `__init__` that creates the defaults.
    """
    added = getattr(config_class, "_keras_momenta_fields", {})
    new_fields = {name: cls for name, cls in new_fields.items() if added.get(name) is not cls}
    if not new_fields:
        return
    config_class.__annotations__.update(new_fields)
    original_init = config_class.__init__

    @functools.wraps(original_init)
    def __init__(self, *args, **kwargs):
        given = {name: kwargs.pop(name) for name in new_fields if name in kwargs}
        original_init(self, *args, **kwargs)
        for name, field_class in new_fields.items():
            if name in given:
                setattr(self, name, given[name])
            elif name not in self.__dict__:
                setattr(self, name, field_class())

    config_class.__init__ = __init__
    config_class._keras_momenta_fields = {**added, **new_fields}
