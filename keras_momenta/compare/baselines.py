"""Baselines of the papers' experiments that Keras 3 lacks: Yogi, QHM, AggMo.

They live beside the tasks, not among the package's optimizers (issue #11):
`keras_momenta.*` holds the methods the papers propose, this module the
methods they are compared with.

* Yogi (Zaheer et al., NeurIPS 2018) is a baseline of Expectigrad (Daley &
  Amato, 2020): the Reddi problem (Figure 1), CIFAR-10 (Figure 3), IWSLT'15
  translation (Table 1) and ImageNet (Figure 4), "using the recommended
  hyperparameters for Yogi" and its "10× larger learning rate".
* QHM (Ma & Yarats, ICLR 2019) and AggMo (Lucas et al., ICLR 2019) are
  baselines of Amortized Nesterov's Momentum (Zhou et al., AM1-/AM2-SGD),
  Appendix A.5 ("comparison with classical momentum, AggMo and QHM"); its
  CIFAR settings "follow Ma and Yarats (2019)", and its Penn Treebank step
  schedule and β = 0.99 follow Lucas et al. (2019). That paper also notes that
  QHM is a reformulation of robust momentum methods (QHM paper, Appendix C.4).
* Neither the IGT nor the Dissecting Adam paper uses any of the three.

Each class follows the Keras house style (`keras.optimizers.SGD`, `Adam`):
the constructor takes every argument shared by Keras optimizers, the state is
created in `build` from the model variables (in their dtype, as in Keras's own
optimizers), `update_step` uses `keras.ops` and `self.assign*` only (so it runs
eagerly, in `tf.function` and under XLA), and `get_config` is complete.
Classes are registered under the package "keras_momenta.compare": a saved
`.keras` model reloads without `custom_objects` once this module is imported.

Hyperparameters are checked with the package's helpers: an invalid value
raises a `ValueError` that names the argument and the allowed range.
"""

import numbers

import keras
from keras import ops

from keras_momenta import _backend
from keras_momenta._base import (
    check_bool,
    check_in_range,
    check_learning_rate,
    check_positive,
    constant,
    keras_arguments,
)

PACKAGE = "keras_momenta.compare"

_INFINITY = float("inf")


def _dense(gradient, variable):
    """The gradient as a dense tensor in the variable's dtype.

    A row-sparse gradient (`tf.IndexedSlices`, from an embedding) becomes
    its dense equivalent, repeated rows summed: the updates below move every
    row anyway, and Yogi's g² must square the sum, not each repeat.
    (`ops.convert_to_tensor` would return the `IndexedSlices` unchanged.)
    """
    return ops.cast(_backend.to_dense(gradient, variable.shape), variable.dtype)


class _Filled(keras.initializers.Initializer):
    """`value` everywhere, rounded once to the variable's dtype.

    `keras.initializers.Constant` casts a Python float through float32 first
    (1e-6 becomes 9.99999997e-7 in a float64 variable).
    """

    def __init__(self, value):
        self.value = float(value)

    def __call__(self, shape, dtype=None):
        dtype = keras.backend.standardize_dtype(dtype or keras.backend.floatx())
        return ops.multiply(constant(self.value, dtype), ops.ones(shape, dtype=dtype))

    def get_config(self):
        return {"value": self.value}


@keras.saving.register_keras_serializable(package=PACKAGE)
class Yogi(keras.optimizers.Optimizer):
    """Yogi: Adam's second moment updated additively.

    For each coordinate, with gradient g at step t = 1, 2, ...:

        m ← β₁·m + (1 − β₁)·g
        v ← v − (1 − β₂)·sign(v − g²)·g²
        θ ← θ − η·m / (√v + ε)

    with m₀ = 0 and v₀ = `initial_accumulator_value`. Where Adam moves v by
    (1 − β₂)(g² − v), Yogi moves it by (1 − β₂)g² towards g²: where v ≫ g²,
    v shrinks by (1 − β₂)g², not by the fraction 1 − β₂ of itself, so the
    effective step size η/(√v + ε) grows slowly (Yogi "controls the increase
    in effective learning rate"). v stays positive for every v₀ > 0: it
    decreases, by (1 − β₂)g², only where v > g².

    Reference: M. Zaheer, S. Reddi, D. Sachan, S. Kale and S. Kumar,
    "Adaptive Methods for Nonconvex Optimization", NeurIPS 2018, Algorithm 2.
    Baseline of Expectigrad (Daley & Amato, 2020), Figures 1, 3, 4 and
    Table 1.

    Defaults are the paper's recommendation: η = 1e-2 ("10× larger" than
    Adam's, as the Expectigrad paper puts it), β₁ = 0.9, β₂ = 0.999,
    ε = 1e-3, and v₀ = 1e-6 (a small positive start, also the default of
    optax's and TensorFlow Addons' Yogi).

    Bias correction: Algorithm 2 has none, hence `bias_correction=False`.
    With `bias_correction=True` the step is Adam's:
    θ ← θ − η·m̂ / (√v̂ + ε), m̂ = m / (1 − β₁ᵗ), v̂ = v / (1 − β₂ᵗ) (the form
    of optax and torch-optimizer). With v₀ > 0 the correction is not exact:
    v̂₁ ≈ v₀/(1 − β₂) + g², about 1e-3 + g² with the defaults.

    Where common implementations differ from this one (and from the paper):

    * optax's `yogi` applies the bias correction above and also starts m at
      `initial_accumulator_value` (here m₀ = 0, as in the paper);
    * TensorFlow Addons' `Yogi` (same defaults, v₀ = 1e-6, m₀ = 0) applies
      the correction in the "ε-hat" form η·√(1 − β₂ᵗ)/(1 − β₁ᵗ)·m/(√v + ε)
      (as Keras's Adam), offers l1/l2 proximal steps and
      `activation="tanh"` (tanh(10(g² − v)) in place of the sign), and
      updates only the touched rows for sparse gradients (here an embedding's
      `IndexedSlices` gradient is made dense: every row's m decays);
    * `benchmarks/yogi.py` of this repository is the default update here (a
      private copy for the Reddi benchmark), but it starts v from
      `keras.initializers.Constant`, which rounds v₀ through float32 even
      for float64 variables; here v₀ is rounded once, to the variable's dtype.

    Weight decay (`weight_decay`) is Keras's decoupled decay, applied before
    the update, as for every Keras optimizer.

    Args:
        learning_rate: η > 0, a float, a `LearningRateSchedule` or a callable.
        beta_1: first-moment constant β₁ in [0, 1).
        beta_2: second-moment constant β₂ in [0, 1).
        epsilon: denominator constant ε > 0.
        initial_accumulator_value: v₀ ≥ 0, the start of v.
        bias_correction: divide m by 1 − β₁ᵗ and v by 1 − β₂ᵗ (not in the
            paper's Algorithm 2).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        learning_rate=1e-2,
        beta_1=0.9,
        beta_2=0.999,
        epsilon=1e-3,
        initial_accumulator_value=1e-6,
        bias_correction=False,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="yogi",
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        check_in_range("beta_1", beta_1, 0.0, 1.0)
        check_in_range("beta_2", beta_2, 0.0, 1.0)
        check_positive("epsilon", epsilon)
        check_in_range("initial_accumulator_value", initial_accumulator_value, 0.0, _INFINITY)
        check_bool("bias_correction", bias_correction)
        super().__init__(learning_rate=learning_rate, **keras_arguments(locals()), **kwargs)
        self.beta_1 = float(beta_1)
        self.beta_2 = float(beta_2)
        self.epsilon = float(epsilon)
        self.initial_accumulator_value = float(initial_accumulator_value)
        self.bias_correction = bias_correction

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # v starts at its constant through the initializer: an assign here
        # would be lost where Keras builds the optimizer (model.fit).
        self._momentums = self.add_optimizer_variables(var_list, "momentum")
        self._second_moments = self.add_optimizer_variables(
            var_list,
            "second_moment",
            initializer=_Filled(self.initial_accumulator_value),
        )

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        index = self._get_variable_index(variable)
        m, v = self._momentums[index], self._second_moments[index]
        g = _dense(gradient, variable)
        lr = ops.cast(learning_rate, dtype)
        beta_1 = constant(self.beta_1, dtype)
        beta_2 = constant(self.beta_2, dtype)
        epsilon = constant(self.epsilon, dtype)

        g2 = ops.square(g)
        new_m = ops.add(ops.multiply(beta_1, m), ops.multiply(1 - beta_1, g))
        new_v = ops.subtract(v, ops.multiply(1 - beta_2, ops.multiply(ops.sign(v - g2), g2)))
        self.assign(m, new_m)
        self.assign(v, new_v)
        if self.bias_correction:
            step = ops.cast(self.iterations + 1, dtype)
            new_m = ops.divide(new_m, 1 - ops.power(beta_1, step))
            new_v = ops.divide(new_v, 1 - ops.power(beta_2, step))
        self.assign_sub(
            variable, ops.divide(ops.multiply(lr, new_m), ops.add(ops.sqrt(new_v), epsilon))
        )

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "beta_1": self.beta_1,
                "beta_2": self.beta_2,
                "epsilon": self.epsilon,
                "initial_accumulator_value": self.initial_accumulator_value,
                "bias_correction": self.bias_correction,
            }
        )
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class QHM(keras.optimizers.Optimizer):
    """Quasi-hyperbolic momentum: a ν-weighted average of SGD and momentum.

    For each coordinate, with gradient g:

        b ← β·b + (1 − β)·g                 momentum buffer, an EMA of g
        θ ← θ − α·[(1 − ν)·g + ν·b]

    with b₀ = 0. ν = 0 is plain SGD with step α; ν = 1 is momentum in its
    EMA form, which equals `keras.optimizers.SGD(α·(1 − β), momentum=β)`
    (Keras's velocity is −α(1 − β)·b) while the step size is constant.

    Reference: J. Ma and D. Yarats, "Quasi-hyperbolic momentum and Adam for
    deep learning", ICLR 2019 (the QHM update rule). Baseline of
    Amortized Nesterov's Momentum (Zhou et al.), Appendix A.5; that paper
    regards QHM as a reformulation of the robust momentum method (QHM
    paper, Appendix C.4).

    Defaults: ν = 0.7 and β = 0.999, the authors' recommended starting point
    (README of their `qhoptim`: "For those who use momentum or Nesterov's
    accelerated gradient with momentum constant β = 0.9, we recommend trying
    out QHM with ν = 0.7 and momentum constant β = 0.999. You'll need to
    normalize the learning rate by dividing by 1 − β_old."), and α = 1.0,
    the step of their example `QHM(lr=1.0, nu=0.7, momentum=0.999)`: SGD
    with step 0.1 and momentum 0.9 (the usual CIFAR setting) normalised.
    No default step is given otherwise; pass α explicitly for other tasks.

    Where common implementations differ:

    * `qhoptim` (the authors' code) requires the step, ν and β, and applies
      weight decay through the gradient (L2, `weight_decay_type="grad"`) by
      default; Keras's `weight_decay` here is decoupled (applied to θ
      before the update);
    * Keras's `SGD` (and PyTorch's) keeps the velocity with the step size
      folded in, so under a step-size schedule QHM with ν = 1 and SGD with
      momentum differ: here α scales the whole buffer at each step, as in the
      paper.

    Args:
        learning_rate: α > 0, a float, a `LearningRateSchedule` or a callable.
        nu: immediate discount factor ν in [0, 1].
        beta: momentum constant β in [0, 1).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        learning_rate=1.0,
        nu=0.7,
        beta=0.999,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="qhm",
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        check_in_range("nu", nu, 0.0, 1.0, high_closed=True)
        check_in_range("beta", beta, 0.0, 1.0)
        super().__init__(learning_rate=learning_rate, **keras_arguments(locals()), **kwargs)
        self.nu = float(nu)
        self.beta = float(beta)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._buffers = self.add_optimizer_variables(var_list, "momentum_buffer")

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        buffer = self._buffers[self._get_variable_index(variable)]
        g = _dense(gradient, variable)
        lr = ops.cast(learning_rate, dtype)
        beta = constant(self.beta, dtype)
        nu = constant(self.nu, dtype)

        new_buffer = ops.add(ops.multiply(beta, buffer), ops.multiply(1 - beta, g))
        self.assign(buffer, new_buffer)
        direction = ops.add(ops.multiply(1 - nu, g), ops.multiply(nu, new_buffer))
        self.assign_sub(variable, ops.multiply(lr, direction))

    def get_config(self):
        config = super().get_config()
        config.update({"nu": self.nu, "beta": self.beta})
        return config


@keras.saving.register_keras_serializable(package=PACKAGE)
class AggMo(keras.optimizers.Optimizer):
    """Aggregated momentum: K heavy-ball velocities with different dampings.

    For each coordinate, with gradient g and β⁽¹⁾, ..., β⁽ᴷ⁾ = `betas`:

        v⁽ⁱ⁾ ← β⁽ⁱ⁾·v⁽ⁱ⁾ − g               for i = 1, ..., K
        θ ← θ + (γ/K)·Σᵢ v⁽ⁱ⁾

    with v⁽ⁱ⁾₀ = 0. A large β gives fast progress along low-curvature
    directions; the small ones damp the oscillations it causes ("passive
    damping"). `betas=[0]` is plain SGD with step γ; one β equals
    `keras.optimizers.SGD(γ, momentum=β)` (Keras's velocity is γ·v) while
    the step size is constant. In a steady gradient g the step tends to
    −(γ/K)·Σᵢ 1/(1 − β⁽ⁱ⁾)·g, 37·γ·g with the default betas.

    Reference: J. Lucas, S. Sun, R. Zemel and R. Grosse, "Aggregated
    Momentum: Stability Through Passive Damping", ICLR 2019.
    Baseline of Amortized Nesterov's Momentum (Zhou et al.), Appendix A.5.

    Defaults: betas = [0, 0.9, 0.99], the paper's default (its "exponential"
    family 1 − aⁱ with a = 0.1 and K = 3, see `from_exp_form`). The paper
    tunes γ per task, and the authors' optimizer has no default step;
    γ = 0.01 is the step of their configuration template
    (`configs/templates/optim/aggmo.json`), and Keras's SGD default. Pass it
    explicitly.

    Where common implementations differ:

    * the authors' PyTorch code keeps v⁽ⁱ⁾ ← β⁽ⁱ⁾·v⁽ⁱ⁾ + g and subtracts
      (γ/K)·Σᵢ v⁽ⁱ⁾: the same iterates with the opposite sign of v;
    * Keras's `SGD` (and PyTorch's) fold the step size into the velocity, so
      under a step-size schedule AggMo with one β and SGD with momentum
      differ: here γ scales the whole sum at each step, as in the paper;
    * the authors' code applies weight decay through the gradient (L2);
      Keras's `weight_decay` here is decoupled (applied to θ before the
      update);
    * the authors' code keys its velocities by β, so a repeated β shares one
      velocity that is updated twice per step; here every entry of `betas`
      has its own velocity (K equal betas behave as that one β).

    Args:
        learning_rate: γ > 0, a float, a `LearningRateSchedule` or a callable.
        betas: a non-empty list of damping constants, each in [0, 1).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema`,
            `ema_momentum`, `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        learning_rate=0.01,
        betas=(0.0, 0.9, 0.99),
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="aggmo",
        **kwargs,
    ):
        check_learning_rate(learning_rate)
        if isinstance(betas, (str, bytes)) or not hasattr(betas, "__len__") or len(betas) == 0:
            raise ValueError(
                f"`betas` must be a non-empty list of numbers in [0.0, 1.0); got {betas!r}."
            )
        for i, beta in enumerate(betas):
            check_in_range(f"betas[{i}]", beta, 0.0, 1.0)
        super().__init__(learning_rate=learning_rate, **keras_arguments(locals()), **kwargs)
        self.betas = [float(beta) for beta in betas]

    @classmethod
    def from_exp_form(cls, learning_rate=0.01, a=0.1, k=3, **kwargs):
        """AggMo with betas 1 − aⁱ for i = 0, ..., k − 1 (the paper's
        "exponential" family; a = 0.1, k = 3 gives [0, 0.9, 0.99])."""
        check_in_range("a", a, 0.0, 1.0, low_closed=False, high_closed=True)
        if not isinstance(k, numbers.Integral) or isinstance(k, bool) or k < 1:
            raise ValueError(f"`k` must be an integer ≥ 1; got {k!r}.")
        return cls(learning_rate, betas=[1.0 - a**i for i in range(k)], **kwargs)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        names = [f"velocity_{i}" for i in range(len(self.betas))]
        velocities = self.add_optimizer_variables(var_list, names)  # a tuple of K lists
        # One list per variable: its K velocities.
        self._velocities = [list(per_variable) for per_variable in zip(*velocities)]

    def update_step(self, gradient, variable, learning_rate):
        dtype = variable.dtype
        velocities = self._velocities[self._get_variable_index(variable)]
        g = _dense(gradient, variable)
        lr = ops.cast(learning_rate, dtype)

        total = None
        for beta, velocity in zip(self.betas, velocities):
            new_velocity = ops.subtract(ops.multiply(constant(beta, dtype), velocity), g)
            self.assign(velocity, new_velocity)
            total = new_velocity if total is None else ops.add(total, new_velocity)
        scale = ops.divide(lr, constant(len(self.betas), dtype))
        self.assign_add(variable, ops.multiply(scale, total))

    def get_config(self):
        config = super().get_config()
        config.update({"betas": list(self.betas)})
        return config
