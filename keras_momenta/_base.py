"""Shared machinery for keras_momenta optimizers.

`MomentaOptimizer` is a thin layer over `keras.optimizers.Optimizer` that adds
what every optimizer of this package needs and Keras does not provide:

* hyperparameter validation that names the argument and the allowed range;
* optimizer state kept in float32 when the model variable is float16 or
  bfloat16 (running sums and counters saturate in 16-bit formats: a bfloat16
  counter stops at 256, a float16 sum of squares overflows at 65504);
* a clear error for integer trainable variables;
* `evaluation_weights`, the values of the point an optimizer reports as its
  answer: the model variables themselves here; optimizers that keep a
  separate output point derive from `keras_momenta.output_point`.
"""

import numbers

import keras
import numpy as np
from keras import ops

from keras_momenta import _backend

LOW_PRECISION_DTYPES = ("float16", "bfloat16")


def state_dtype(variable_dtype):
    """The dtype of optimizer state kept for a variable of `variable_dtype`."""
    variable_dtype = keras.backend.standardize_dtype(variable_dtype)
    return "float32" if variable_dtype in LOW_PRECISION_DTYPES else variable_dtype


def constant(value, dtype):
    """A Python number as a tensor of `dtype`, rounded once.

    `ops.cast(0.9, "float64")` first makes a float32 tensor and so rounds 0.9
    to float32 precision; `convert_to_tensor` with the dtype does not.
    """
    return ops.convert_to_tensor(value, dtype=dtype)


# The constructor arguments every Keras optimizer takes, besides the learning rate.
KERAS_ARGUMENTS = (
    "weight_decay",
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "ema_momentum",
    "ema_overwrite_frequency",
    "loss_scale_factor",
    "gradient_accumulation_steps",
    "name",
)


def keras_arguments(arguments):
    """The Keras optimizer arguments among a constructor's `locals()`, to forward.

    Public constructors list them in their signatures, as Keras's own
    optimizers do, and pass them on with this instead of one by one.
    """
    return {name: arguments[name] for name in KERAS_ARGUMENTS}


def _is_real_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def _in_float32(value):
    """`value` as the nearest float32, where the update computes with it."""
    with np.errstate(over="ignore"):
        return float(np.float32(value))


def check_learning_rate(learning_rate):
    """Schedules and callables are checked by Keras; plain numbers here."""
    if isinstance(learning_rate, bool) or (
        _is_real_number(learning_rate)
        and not 0 < _in_float32(learning_rate) < float("inf")
    ):
        raise ValueError(
            f"`learning_rate` must be a positive finite float (also in float32, "
            f"where Keras keeps it), a `keras.optimizers.schedules.LearningRateSchedule` "
            f"or a callable; got {learning_rate!r}."
        )


def check_in_range(name, value, low, high, low_closed=True, high_closed=False, note=None):
    """Raise a `ValueError` naming `name` unless low (<|<=) value (<|<=) high.

    The value must also be in range once rounded to float32, the precision of
    the state of float32 and 16-bit variables: 0.99999999 is 1.0 there.
    """
    if not _is_real_number(value):
        raise ValueError(f"`{name}` must be a real number; got {value!r}.")

    def inside(x):
        above_low = x >= low if low_closed else x > low
        below_high = x <= high if high_closed else x < high
        return above_low and below_high

    interval = ("[" if low_closed else "(") + f"{low}, {high}" + ("]" if high_closed else ")")
    explanation = f" ({note})" if note else ""
    if not inside(value):
        raise ValueError(f"`{name}` must be in {interval}{explanation}; got {value!r}.")
    rounded = _in_float32(value)
    if not inside(rounded):
        raise ValueError(
            f"`{name}` must be in {interval}{explanation}, also once rounded to "
            f"float32, the precision the update computes in; got {value!r}, "
            f"which is {rounded!r} in float32."
        )


def check_positive(name, value):
    """A positive finite number (also in float32)."""
    check_in_range(name, value, 0, float("inf"), low_closed=False)


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; got {value!r}.")


def check_one_of(name, value, allowed):
    """One of the strings `allowed`, exactly (case and type included)."""
    if not (isinstance(value, str) and value in allowed):
        raise ValueError(
            f"`{name}` must be one of {', '.join(map(repr, allowed))}; got {value!r}."
        )


def variable_path_name(variable):
    """A variable's path, usable in the name of a state variable (the path
    of a `keras.layers.TFSMLayer`'s weight, or the name of a `tf.Variable`,
    ends in TensorFlow's ":0")."""
    return str(getattr(variable, "path", variable.name)).replace("/", "_").replace(":", "_")


class MomentaOptimizer(keras.optimizers.Optimizer):
    """Base class of the keras_momenta optimizers (not used directly)."""

    # True when `update_step` only adds to the variable an amount that does
    # not depend on its value (what `km.IGT` needs of its inner optimizer).
    value_independent_update = False

    def __init__(self, learning_rate, **kwargs):
        check_learning_rate(learning_rate)
        super().__init__(learning_rate=learning_rate, **kwargs)

    def build(self, var_list):
        for variable in var_list:
            if not keras.backend.is_float_dtype(variable.dtype):
                raise ValueError(
                    f"{type(self).__name__} cannot train variable "
                    f"{variable_path_name(variable)!r} of dtype {variable.dtype}: its "
                    f"steps are fractional, and integer arithmetic would truncate them. "
                    f"Make the variable floating-point, or set `trainable=False`."
                )
        super().build(var_list)

    def apply(self, grads, trainable_variables=None):
        self.refuse_building_in_replica()
        return super().apply(grads, trainable_variables)

    def refuse_building_in_replica(self):
        """A clear error where Keras would create the state inside
        `strategy.run` in a `tf.function` and fail with an unrelated graph
        error (keras-team/keras#23085)."""
        if not self.built and _backend.in_replica_function():
            raise ValueError(
                f"{type(self).__name__} is used for the first time inside "
                f"`strategy.run` in a `tf.function`, where its state cannot be "
                f"created. Build it in the strategy's scope before the loop: "
                f"`with strategy.scope(): optimizer.build(model.trainable_variables)`."
            )

    def add_state_variable(
        self, reference_variable, name, initializer="zeros", dtype=None, leading_shape=()
    ):
        """Like `add_variable_from_reference`, in `state_dtype` precision (or `dtype`).

        The variable is shaped like `reference_variable`, after `leading_shape`
        (a table of copies), placed beside it under a `tf.distribute` strategy
        and laid out like it under a `keras.distribution` (the leading axes
        replicated).
        """
        dtype = dtype or state_dtype(reference_variable.dtype)
        with self.colocated_with(reference_variable):
            return self.add_variable(
                shape=tuple(leading_shape) + tuple(reference_variable.shape),
                initializer=initializer,
                dtype=dtype,
                layout=_layout_with_leading_axes(reference_variable, len(leading_shape)),
                name=f"{variable_path_name(reference_variable)}_{name}",
            )

    def add_variable_from_reference(self, reference_variable, name=None, initializer="zeros"):
        # Keras names the state after the variable's path, which for the
        # weights of a `keras.layers.TFSMLayer` keeps TensorFlow's ":0", not a
        # valid name scope: Keras 3.15's own optimizers fail to build there.
        return self.add_state_variable(
            reference_variable,
            name or "var",
            initializer,
            dtype=keras.backend.standardize_dtype(reference_variable.dtype),
        )

    def colocated_with(self, reference_variable):
        """A context in which new optimizer variables are placed beside
        `reference_variable` (under a `tf.distribute` strategy)."""
        return _backend.colocated_with(self, reference_variable)

    def local_step(self, dtype):
        """The 1-based number of the update being applied, as `dtype`."""
        return ops.cast(self.iterations + 1, dtype)

    @property
    def has_output_point(self):
        """Whether this optimizer's answer differs from the point where gradients
        are taken (see `keras_momenta.output_point`)."""
        return False

    def evaluation_weights(self, var_list):
        """The values of this optimizer's answer: here the variables' own values."""
        return [ops.convert_to_tensor(v) for v in var_list]

    # Custom loops call these around evaluation and saving for every optimizer
    # of the package; output-point optimizers override them.
    def load_evaluation_weights(self, var_list):
        """Put the answer into the model variables: here they hold it already."""

    def restore_training_weights(self, var_list):
        """Put the training point back into the model variables: here it never left."""


def _layout_with_leading_axes(reference_variable, leading_axes):
    """The layout of `reference_variable` with `leading_axes` replicated axes in front."""
    layout = getattr(reference_variable, "_layout", None)
    if layout is None or not leading_axes:
        return layout
    if not isinstance(layout, keras.distribution.TensorLayout):
        # A backend's own sharding: the distribution lays the table out.
        return None
    return keras.distribution.TensorLayout(
        (None,) * leading_axes + tuple(layout.axes), layout.device_mesh
    )
