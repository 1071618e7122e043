"""Shared machinery for keras_momenta optimizers.

`MomentaOptimizer` is a thin layer over `keras.optimizers.Optimizer` that adds
what every optimizer of this package needs and Keras does not provide:

* hyperparameter validation that names the argument and the allowed range;
* optimizer state kept in float32 when the model variable is float16 or
  bfloat16 (running sums and counters saturate in 16-bit formats: a bfloat16
  counter stops at 256, a float16 sum of squares overflows at 65504);
* `evaluation_weights`, the values of the point an optimizer reports as its
  answer (the model variables themselves unless an optimizer keeps a separate
  output point).
"""

import contextlib
import numbers

import keras
from keras import ops

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


def compiling_with_xla():
    """True while tracing a step that XLA will compile.

    TensorFlow traces `tf.function(jit_compile=True)` (what Keras's
    `jit_compile=True` uses) inside an XLA context; JAX always compiles with
    XLA. An update can then pick the form XLA compiles best, e.g. without
    branches, which XLA turns into selects over whole tensors.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow":
        return False
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without these modules
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def _is_real_number(value):
    return isinstance(value, numbers.Real) and not isinstance(value, bool)


def check_learning_rate(learning_rate):
    """Schedules and callables are checked by Keras; plain numbers here."""
    if _is_real_number(learning_rate) and not learning_rate > 0:
        raise ValueError(
            f"`learning_rate` must be a positive float, a "
            f"`keras.optimizers.schedules.LearningRateSchedule` or a callable; "
            f"got {learning_rate!r}."
        )


def check_in_range(name, value, low, high, low_closed=True, high_closed=False):
    """Raise a `ValueError` naming `name` unless low (<|<=) value (<|<=) high."""
    if not _is_real_number(value):
        raise ValueError(f"`{name}` must be a real number; got {value!r}.")
    above_low = value >= low if low_closed else value > low
    below_high = value <= high if high_closed else value < high
    if not (above_low and below_high):
        interval = (
            ("[" if low_closed else "(")
            + f"{low}, {high}"
            + ("]" if high_closed else ")")
        )
        raise ValueError(f"`{name}` must be in {interval}; got {value!r}.")


def check_positive(name, value):
    check_in_range(name, value, 0, float("inf"), low_closed=False)


def check_bool(name, value):
    if not isinstance(value, bool):
        raise ValueError(f"`{name}` must be True or False; got {value!r}.")


class MomentaOptimizer(keras.optimizers.Optimizer):
    """Base class of the keras_momenta optimizers (not used directly)."""

    # True when `update_step` only adds to the variable an amount that does
    # not depend on its value (what `km.IGT` needs of its inner optimizer).
    value_independent_update = False

    def __init__(self, learning_rate, **kwargs):
        check_learning_rate(learning_rate)
        super().__init__(learning_rate=learning_rate, **kwargs)

    def add_state_variable(self, reference_variable, name, initializer="zeros"):
        """Like `add_variable_from_reference`, in `state_dtype` precision."""
        dtype = state_dtype(reference_variable.dtype)
        if dtype == keras.backend.standardize_dtype(reference_variable.dtype):
            return self.add_variable_from_reference(
                reference_variable, name=name, initializer=initializer
            )
        path = getattr(reference_variable, "path", reference_variable.name)
        with self._colocated_with(reference_variable):
            return self.add_variable(
                shape=reference_variable.shape,
                initializer=initializer,
                dtype=dtype,
                name=f"{str(path).replace('/', '_')}_{name}",
            )

    def _colocated_with(self, reference_variable):
        # Mirrors the TensorFlow backend's `add_variable_from_reference`, which
        # places each slot beside its model variable under a strategy.
        strategy = getattr(self, "_distribution_strategy", None)
        if strategy is None:
            return contextlib.nullcontext()
        value = getattr(reference_variable, "value", reference_variable)
        return strategy.extended.colocate_vars_with(value)

    def local_step(self, dtype):
        """The 1-based number of the update being applied, as `dtype`."""
        return ops.cast(self.iterations + 1, dtype)

    # ----------------------------------------------------------- output point
    #
    # Some optimizers report as their answer a point other than the one where
    # gradients are taken (IGT's true iterate, the averages of AM1/AM2-SGD
    # option II). They keep that point in an "output slot" per variable and
    # override `_output_slots`. Everything below is shared: reading the point
    # (`evaluation_weights`), swapping it into the model and back
    # (`swap_evaluation_weights`, used by `km.callbacks.SwapEvaluationWeights`)
    # and writing it into the model at the end of `fit`
    # (`finalize_variable_values`).

    evaluation_weights_in_model = False

    @property
    def has_output_point(self):
        """Whether this optimizer's answer differs from the point where gradients are taken."""
        return False

    def add_stash_variables(self, var_list):
        """A stash for each float16/bfloat16 variable (None for the others).

        An output slot is kept in float32 for a 16-bit variable: exchanging it
        with the variable would round it, so such a variable's training point
        is stashed instead while the output point is in the model.
        """
        return [
            self.add_state_variable(v, "stash")
            if state_dtype(v.dtype) != keras.backend.standardize_dtype(v.dtype)
            else None
            for v in var_list
        ]

    def _output_slots(self, variable):
        """(output slot, stash slot or None) for `variable`; None if no output point.

        The stash is a state variable that is free between steps, used to keep
        the training point while the output point is in the model. Without one,
        the swap exchanges the values of the variable and the output slot.
        """
        return None

    def _output_value(self, variable, output_slot):
        # Before the first update the output slot is not yet initialised: the
        # output point is the starting point, which the variable holds.
        return ops.where(
            ops.equal(self.iterations, 0), variable, ops.cast(output_slot, variable.dtype)
        )

    def evaluation_weights(self, var_list):
        """Values of the point this optimizer reports as its answer, per variable.

        For optimizers whose answer is the point where gradients are taken
        these are the variables' own values.
        """
        values = []
        for variable in var_list:
            slots = self._output_slots(variable)
            if slots is None or self.evaluation_weights_in_model:
                values.append(ops.convert_to_tensor(variable))
            else:
                values.append(self._output_value(variable, slots[0]))
        return values

    def swap_evaluation_weights(self, var_list):
        """Exchange the training point and the output point in the model, in place."""
        into_model = not self.evaluation_weights_in_model
        for variable in var_list:
            slots = self._output_slots(variable)
            if slots is None:
                continue
            output, stash = slots
            if stash is not None and into_model:
                self._update_replicas(variable, self._stash_and_load, output, stash)
            elif stash is not None:
                self._update_replicas(variable, lambda var, out, st: var.assign(ops.cast(st, var.dtype)), output, stash)
            else:
                self._update_replicas(variable, self._exchange, output)
        self.evaluation_weights_in_model = into_model

    def finalize_variable_values(self, var_list):
        """At the end of `fit`: the model variables take the output point."""
        super().finalize_variable_values(var_list)
        for variable in var_list:
            slots = self._output_slots(variable)
            if slots is None:
                continue
            if not self.evaluation_weights_in_model:
                self._update_replicas(
                    variable, lambda var, out: var.assign(self._output_value(var, out)), slots[0]
                )
            elif slots[1] is None:
                # The exchange left the training point in the output slot.
                self._update_replicas(
                    variable, lambda var, out: out.assign(ops.cast(var, out.dtype)), slots[0]
                )
        self.evaluation_weights_in_model = False

    def _stash_and_load(self, variable, output, stash):
        value = self._output_value(variable, output)
        stash.assign(ops.cast(variable, stash.dtype))
        variable.assign(value)

    def _exchange(self, variable, output):
        value = self._output_value(variable, output)
        output.assign(ops.cast(variable, output.dtype))
        variable.assign(value)

    def _update_replicas(self, variable, fn, *slots):
        """Run `fn(variable, *slots)` on every replica's copies (outside a step)."""
        strategy = getattr(self, "_distribution_strategy", None)
        if strategy is None:
            fn(variable, *slots)
            return
        raw = lambda v: v.value if isinstance(v, keras.Variable) else v  # noqa: E731
        strategy.extended.update(
            raw(variable), fn, args=tuple(raw(s) for s in slots), group=False
        )
