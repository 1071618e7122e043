"""Implicit gradient transport (Arnold, Manzagol, Babanezhad, Mitliagkas &
Le Roux, 2019)."""

import contextlib
import weakref

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
)
from keras_momenta.output_point import OutputPointOptimizer, read

# Inner optimizers whose whole step is `update_step` and which only add to the
# parameter an amount that does not depend on its value: IGT collects that
# amount as Δθ, so a step that reads the parameter (Lamb's trust ratio,
# Adafactor's relative step, Ftrl's closed form) or one with extra work
# outside `update_step` (Nadam's running product) would be wrong.
_KERAS_INNER_OPTIMIZERS = (
    keras.optimizers.SGD,
    keras.optimizers.Adam,
    keras.optimizers.AdamW,
    keras.optimizers.Adamax,
    keras.optimizers.RMSprop,
    keras.optimizers.Adagrad,
    keras.optimizers.Adadelta,
    keras.optimizers.Lion,
)

# Shared arguments that act around the inner step and so belong on IGT.
_WRAPPER_ONLY_ARGUMENTS = (
    "clipnorm",
    "clipvalue",
    "global_clipnorm",
    "use_ema",
    "gradient_accumulation_steps",
    "loss_scale_factor",
)


def _supported_inner(optimizer):
    """Matched by behaviour: a Keras optimizer above, or a subclass that keeps
    its `update_step` (the PyTorch backend's own SGD, Adam, ... are such
    subclasses), or a value-independent keras_momenta optimizer."""
    for keras_class in _KERAS_INNER_OPTIMIZERS:
        if isinstance(optimizer, keras_class) and type(optimizer).update_step is keras_class.update_step:
            return True
    return isinstance(optimizer, MomentaOptimizer) and optimizer.value_independent_update


@keras.saving.register_keras_serializable(package="keras_momenta")
class IGT(OutputPointOptimizer):
    """Implicit gradient transport around any value-independent Keras optimizer.

    IGT is a gradient estimator. At step t = 1, 2, ... with gradient g taken
    at the model variable (the *shifted* point):

        v ← γₜ·v + (1 − γₜ)·g               the transported gradient estimate
        Δθ = inner optimizer's step for gradient v
        θ ← θ + Δθ                          the true iterate (optimizer state)
        model variable ← θ + γₜ₊₁/(1 − γₜ₊₁)·Δθ   where the next gradient is taken

    with γ₁ = 0. `tail_fraction` is the paper's c ∈ (0, 1]: c = 1 gives
    γₜ = (t − 1)/t (Eq. IGT; with `SGD(momentum=μ)` inside, Heavyball-IGT,
    Algorithm 1); c < 1 gives anytime tail averaging (Section 4),

        γₜ = c(t−1)/(1 + c(t−1)) · (1 − √((1 − c)/(t(t − 1)))/c),  t ≥ 2,

    which averages about the last fraction c of the gradients (ITA, HB-ITA,
    Adam-ITA with SGD, SGD with momentum, Adam inside).

    For c < 1/2 this formula makes the first γₜ negative (γₜ < 0 while
    t(t − 1) < (1 − c)/c²; for c = 0.25, γ₂ ≈ −0.29 and γ₃ ≈ −0.14). The paper and both public implementations use it as it is, and so
    does this class by default; `nonnegative_momentum=True` clips γₜ at 0, so
    those early steps use the latest gradient alone. γₜ stays above −1, so the
    weight 1 − γₜ of the new gradient stays below 2.

    Δθ is the amount the inner optimizer adds to θ, collected from its
    `assign_add`/`assign_sub` calls, never the difference θ_new − θ_old: the
    shift multiplier grows like c·t and would amplify that cancellation error.

    The answer of the method is θ, not the model variable: read it with
    `evaluation_weights`, swap it into the model around evaluation with
    `km.callbacks.SwapEvaluationWeights`; `fit` puts it into the model when it
    ends (`finalize_variable_values`) and keeps all state, so that a further
    `fit` continues the run (see `keras_momenta.output_point`). Each variable
    starts its run at its own first update, from its value then: a variable
    without gradients keeps its value, and one changed from outside between
    two `fit` calls continues from its new value.

    A variable's constraint (`kernel_constraint=...`) applies to θ after each
    step, and Keras applies it to the model variable: θ, the answer, satisfies
    it.

    Decoupled weight decay acts on θ: set it either on IGT or on the inner
    optimizer (e.g. `keras.optimizers.AdamW`), with that optimizer's learning
    rate and exclusions. Clipping, gradient accumulation, loss scaling and EMA
    act on the raw gradient and belong on IGT; EMA of the model variables is
    refused, as they hold the shifted point.

    Supported inner optimizers: Keras's SGD (with momentum or Nesterov), Adam,
    AdamW, Adamax, RMSprop, Adagrad, Adadelta and Lion, and keras_momenta
    optimizers whose update does not read the parameter values. The inner
    optimizer's learning-rate schedule carries into the shift. Row-sparse
    gradients are made dense (v is dense).

    State per variable: v and θ, plus the inner optimizer's; for a float16 or
    bfloat16 variable also a stash that keeps the shifted point while θ is
    swapped into the model (exchanging it with the float32 θ would round θ).

    Reference: M. Arnold, P.-A. Manzagol, R. Babanezhad, I. Mitliagkas and
    N. Le Roux, "Reducing the variance in online optimization by transporting
    past gradients", NeurIPS 2019, Sections 3-4 and Algorithm 1.

    Args:
        inner_optimizer: a new (not yet built) Keras optimizer that turns the
            estimate v into a step.
        tail_fraction: c in (0, 1]. The authors' TensorFlow code calls 1/c its
            `tail_fraction`.
        nonnegative_momentum: clip γₜ at 0 (see above).

    The other arguments are Keras's shared optimizer arguments, as for every
    Keras optimizer; weight decay acts on θ.
    """

    def __init__(
        self,
        inner_optimizer,
        tail_fraction=1.0,
        nonnegative_momentum=False,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="igt",
        **kwargs,
    ):
        if "learning_rate" in kwargs:
            raise ValueError(
                "IGT takes no `learning_rate`: it uses its inner optimizer's "
                "(and its schedule). Set it there, e.g. "
                "`km.IGT(keras.optimizers.SGD(learning_rate=0.5))`."
            )
        if isinstance(inner_optimizer, dict):
            inner_optimizer = keras.saving.deserialize_keras_object(inner_optimizer)
        _check_inner(inner_optimizer)
        check_in_range(
            "tail_fraction",
            tail_fraction,
            0.0,
            1.0,
            low_closed=False,
            high_closed=True,
            note="the paper's c, the fraction of recent gradients averaged; the "
            "authors' TensorFlow code's `tail_fraction` is 1/c: pass its reciprocal",
        )
        check_bool("nonnegative_momentum", nonnegative_momentum)
        if use_ema:
            raise ValueError(
                "`use_ema=True` is not supported by IGT: the model variables hold "
                "the shifted point, whose average is not a meaningful answer. "
                "IGT's answer is its true iterate: use `evaluation_weights` or "
                "`km.callbacks.SwapEvaluationWeights`."
            )
        if weight_decay is not None and inner_optimizer.weight_decay is not None:
            raise ValueError(
                "`weight_decay` is set both on IGT and on its inner optimizer; "
                "set it on one of them."
            )
        check_in_range("ema_momentum", ema_momentum, 0.0, 1.0, high_closed=True)
        # The base class's learning rate is unused: IGT reports the inner one.
        keras.optimizers.Optimizer.__init__(
            self, learning_rate=0.0, **keras_arguments(locals()), **kwargs
        )
        self.inner_optimizer = inner_optimizer
        inner_optimizer._keras_momenta_igt = weakref.ref(self)
        self.tail_fraction = float(tail_fraction)
        self.nonnegative_momentum = nonnegative_momentum

    # ------------------------------------------------------------------ state

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._estimates = [self.add_state_variable(v, "igt_estimate") for v in var_list]
        self._true_params = [self.add_state_variable(v, "igt_true_param") for v in var_list]
        self._set_answer_slots(var_list, self._true_params)
        # The inner optimizer steps θ: its slots take θ's shape and dtype.
        self.inner_optimizer.build(self._true_params)

    @property
    def variables(self):
        return self._variables + self.inner_optimizer.variables

    @property
    def learning_rate(self):
        return self.inner_optimizer.learning_rate

    @learning_rate.setter
    def learning_rate(self, learning_rate):
        self.inner_optimizer.learning_rate = learning_rate

    @property
    def has_output_point(self):
        return True

    # ------------------------------------------------------------------- step

    def momentum_at(self, step, dtype="float64"):
        """γ at the 1-based `step` (a tensor or number), as `dtype`."""
        return self._momentum_and_complement(step, dtype)[0]

    def _momentum_and_complement(self, step, dtype):
        return transport_momentum(step, self.tail_fraction, self.nonnegative_momentum, dtype)

    def _apply_weight_decay(self, variables):
        # Decay acts on the true iterate inside `update_step`, never on the
        # shifted point the model variables hold.
        return

    def _decay_source(self):
        if self.weight_decay is not None:
            return self
        if self.inner_optimizer.weight_decay is not None:
            return self.inner_optimizer
        return None

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        super()._backend_update_step(grads, trainable_variables, learning_rate)
        # The inner optimizer's own counter drives its bias corrections and
        # schedules; it advances once per applied IGT step.
        self.inner_optimizer.iterations.assign_add(1)

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        start = self._begin_update(variable)
        estimate = self._estimates[start.index]
        true_param = self._true_params[start.index]
        step = ops.cast(start.step, dtype)
        gamma, complement = self._momentum_and_complement(step, dtype)
        next_gamma, next_complement = self._momentum_and_complement(step + 1, dtype)

        gradient = _backend.densify(_backend.cast(gradient, dtype))
        point = read(variable, dtype)
        # θ starts at the variable's value when its run starts; it cannot be
        # set in build(), which `fit` runs where assignments are dropped.
        theta = self._answer_or_point(start, point, dtype)
        decay_source = self._decay_source()
        if decay_source is not None and decay_source._use_weight_decay(variable):
            rate = ops.multiply(
                ops.cast(learning_rate, dtype), constant(decay_source.weight_decay, dtype)
            )
            theta = ops.subtract(theta, ops.multiply(rate, theta))

        # γ = 0 on a run's first step, where v is exactly g.
        self.assign(
            estimate,
            ops.where(start.fresh, gradient, transport(estimate, gradient, complement)),
        )
        with _collecting_additions(self.inner_optimizer, true_param) as additions:
            self.inner_optimizer.update_step(estimate, true_param, learning_rate)
        step_taken = _sum_or_zeros(additions, estimate)
        new_theta = ops.add(theta, step_taken)
        constraint = self._constraint(start.index)
        if constraint is not None:
            new_theta = constraint(new_theta)
        self.assign(true_param, new_theta)
        self.assign(
            variable,
            ops.cast(shifted_point(new_theta, step_taken, next_gamma, next_complement), variable.dtype),
        )

    # ----------------------------------------------------------------- config

    def get_config(self):
        config = super().get_config()
        config.pop("learning_rate", None)
        config.update(
            {
                "inner_optimizer": keras.saving.serialize_keras_object(self.inner_optimizer),
                "tail_fraction": self.tail_fraction,
                "nonnegative_momentum": self.nonnegative_momentum,
            }
        )
        return config

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        if "inner_optimizer" not in config:
            raise ValueError(
                "IGT wraps another optimizer and has no default one: pass it as "
                "`km.IGT(keras.optimizers.SGD(0.1))`, or by name as "
                "`{'class_name': 'igt', 'config': {'inner_optimizer': 'sgd'}}`."
            )
        inner = config.pop("inner_optimizer")
        if isinstance(inner, str):
            inner = keras.optimizers.get(inner)
        else:
            inner = keras.saving.deserialize_keras_object(inner, custom_objects=custom_objects)
        return cls(inner, **config)


# The update maths: functions of tensors in `keras.ops`, shared by every front end.


def transport_momentum(step, tail_fraction, nonnegative=False, dtype="float64"):
    """(γₜ, 1 − γₜ) at the 1-based `step` for the paper's c = `tail_fraction`.

    The complement is computed without cancellation: γₜ → 1, and 1 − γₜ taken
    from a rounded γₜ loses all its digits by t ≈ 1/eps (float32: relative
    error 6e-3 at t = 1e5). `nonnegative` clips γₜ at 0.
    """
    t = ops.convert_to_tensor(step, dtype=dtype)
    one = constant(1.0, dtype)
    if tail_fraction == 1.0:
        complement = ops.divide(one, t)
        gamma = ops.divide(t - one, t)
    else:
        c = constant(tail_fraction, dtype)
        t = _backend.maximum(t, one)
        # 1 − γₜ = (1 + √((1 − c)(t − 1)/t)) / (1 + c(t − 1)), which is 1 at t = 1.
        denominator = one + c * (t - one)
        complement = (one + ops.sqrt((one - c) * (t - one) / t)) / denominator
        gamma = (c * (t - one) - ops.sqrt((one - c) * (t - one) / t)) / denominator
    if nonnegative:
        gamma = _backend.maximum(gamma, ops.zeros_like(gamma))
        complement = _backend.minimum(complement, ops.ones_like(complement))
    return gamma, complement


def transport(estimate, gradient, complement):
    """γ·v + (1 − γ)·g, as v + (1 − γ)(g − v): the small weight multiplies a
    small difference."""
    return ops.add(estimate, ops.multiply(complement, ops.subtract(gradient, estimate)))


def shifted_point(theta, step_taken, next_gamma, next_complement):
    """θ + γₜ₊₁/(1 − γₜ₊₁)·Δθ, where the next gradient is taken."""
    return ops.add(theta, ops.multiply(ops.divide(next_gamma, next_complement), step_taken))


@contextlib.contextmanager
def _collecting_additions(optimizer, target):
    """Within the block, what `optimizer` adds to `target` is collected, not applied.

    Yields the list of additions (subtractions enter negated). Writes to any
    other variable, the inner optimizer's own state, go through.
    """
    additions = []
    add, subtract, assign = optimizer.assign_add, optimizer.assign_sub, optimizer.assign

    def collect_add(variable, value):
        if variable is target:
            additions.append(ops.convert_to_tensor(value))
        else:
            add(variable, value)

    def collect_subtract(variable, value):
        if variable is target:
            additions.append(ops.negative(value))
        else:
            subtract(variable, value)

    def refuse_assign(variable, value):
        if variable is target:
            raise ValueError(
                f"IGT's inner optimizer {type(optimizer).__name__} sets the parameter "
                f"with `assign`; IGT needs a step that adds to it (`assign_add` or "
                f"`assign_sub`) an amount that does not depend on its value."
            )
        assign(variable, value)

    optimizer.assign_add, optimizer.assign_sub = collect_add, collect_subtract
    optimizer.assign = refuse_assign
    try:
        yield additions
    finally:
        del optimizer.assign_add, optimizer.assign_sub, optimizer.assign


def _sum_or_zeros(tensors, like):
    if not tensors:
        return ops.zeros(like.shape, like.dtype)
    total = tensors[0]
    for tensor in tensors[1:]:
        total = ops.add(total, tensor)
    return total


def _check_inner(optimizer):
    if not isinstance(optimizer, keras.optimizers.Optimizer):
        raise ValueError(
            f"`inner_optimizer` must be a Keras optimizer instance; got {optimizer!r}."
        )
    if not _supported_inner(optimizer):
        names = ", ".join(c.__name__ for c in _KERAS_INNER_OPTIMIZERS)
        reason = getattr(optimizer, "value_independent_reason", None) or (
            "IGT needs a step that does not read the parameter values and lives "
            "entirely in `update_step`"
        )
        kind = type(optimizer)
        raise ValueError(
            f"`inner_optimizer` {kind.__module__}.{kind.__qualname__} is not supported "
            f"by IGT: {reason}. Supported: Keras's {names} (and subclasses that "
            f"keep their `update_step`); keras_momenta's Expectigrad, MSSD, and "
            f"MSVAG and AdamStar with variance='moving_average'."
        )
    if optimizer.built:
        raise ValueError("`inner_optimizer` must be new: it has already been built.")
    owner = getattr(optimizer, "_keras_momenta_igt", None)
    if owner is not None and owner() is not None:
        raise ValueError(
            "`inner_optimizer` already belongs to another IGT: its state would be "
            "shared by both. Give each IGT its own inner optimizer."
        )
    for argument in _WRAPPER_ONLY_ARGUMENTS:
        if getattr(optimizer, argument, None):
            raise ValueError(
                f"`{argument}` is set on the inner optimizer; set it on IGT "
                f"instead, which applies it to the raw gradient."
            )
