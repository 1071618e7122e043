"""Optimizers for `tf_keras` (Keras 2), the Keras of TF official-models.

tf-models-official builds its optimizers with `tf_keras` and accepts only
`tf_keras` optimizers, so the Keras 3 classes of this package cannot be
given to it. The classes here are `tf_keras` legacy optimizers (the kind
official-models builds by default, and the only kind its EMA wrapper takes)
whose updates are computed by the same update-maths functions as the Keras 3
classes, so the formulas exist once.

`register_optimizers()` makes them selectable by name in an official-models
`OptimizationConfig` (`optimizer: {type: expectigrad, expectigrad: {...}}`).

Work in progress (issue #13): `Expectigrad`, `MSSD`, `MSVAG` and `AdamStar`
(moving-average variance) are here; IGT, AM1-SGD and AM2-SGD are not yet
(their answer is not the training point, and official-models' orbit loop
needs a hook to evaluate and export it). The mini-batch variance of M-SVAG
and ADAM* needs per-example gradients, which only the Keras 3 classes collect.

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

import tensorflow as tf

from keras_momenta import dissecting_adam as _dissecting_adam
from keras_momenta import expectigrad as _expectigrad
from keras_momenta._base import check_bool, check_in_range, check_learning_rate, check_one_of

try:
    import tf_keras
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_momenta.official needs tf_keras (Keras 2), the Keras of TF "
        "official-models: `pip install tf-keras` matching your TensorFlow."
    ) from error


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


# ------------------------------------------------------- official-models registry

# The `type` names of an official-models optimizer config.
OPTIMIZERS = {"expectigrad": Expectigrad, "mssd": MSSD, "msvag": MSVAG, "adamstar": AdamStar}


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
