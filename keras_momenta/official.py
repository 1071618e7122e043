"""Optimizers for `tf_keras` (Keras 2), the Keras of TF official-models.

tf-models-official builds its optimizers with `tf_keras` and accepts only
`tf_keras` optimizers, so the Keras 3 classes of this package cannot be
given to it. The classes here are `tf_keras` legacy optimizers (the kind
official-models builds by default, and the only kind its EMA wrapper takes)
whose updates are computed by the same update-maths functions as the Keras 3
classes, so the formulas exist once.

Work in progress (issue #13): `Expectigrad` is here; IGT, M-SSD, M-SVAG,
ADAM*, AM1-SGD and AM2-SGD, and the registration with
`official.modeling.optimization`, are not yet.

Differences from the Keras 3 classes: state is kept in the variable's dtype
(`tf_keras` slots cannot have another), so Expectigrad's nonzero counter is a
float count (exact to 2²⁴ steps for float32 variables) and its float32 sum of
squares carries no rounding-error term; row-sparse gradients are applied as
their dense equivalent (the same result, at the cost of a dense update).
"""

import tensorflow as tf

from keras_momenta import expectigrad as _expectigrad
from keras_momenta._base import (
    check_bool,
    check_in_range,
    check_learning_rate,
    check_one_of,
    check_positive,
)

try:
    import tf_keras
except ImportError as error:  # pragma: no cover - depends on the environment
    raise ImportError(
        "keras_momenta.official needs tf_keras (Keras 2), the Keras of TF "
        "official-models: `pip install tf-keras` matching your TensorFlow."
    ) from error


class Expectigrad(tf_keras.optimizers.legacy.Optimizer):
    """Expectigrad (Daley & Amato, 2020, Algorithm 1) for `tf_keras`.

    The update, its arguments and their allowed ranges are those of
    `keras_momenta.Expectigrad` (see its docstring), computed by the same
    functions (`keras_momenta.expectigrad.accumulate_squares`,
    `normalised_step`, `bias_corrected_rate`). `**kwargs` are `tf_keras`'s
    legacy optimizer arguments (`clipnorm`, `clipvalue`, `global_clipnorm`).
    """

    _HAS_AGGREGATE_GRAD = True

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
        if not isinstance(learning_rate, tf_keras.optimizers.schedules.LearningRateSchedule):
            check_learning_rate(learning_rate)
        check_in_range("beta", beta, 0.0, 1.0)
        check_positive("epsilon", epsilon)
        check_bool("sparse_counter", sparse_counter)
        check_one_of("momentum", momentum, _expectigrad.MOMENTUM_FORMS)
        super().__init__(name, **kwargs)
        self._set_hyper("learning_rate", learning_rate)
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
        dtype = var.dtype.base_dtype
        learning_rate = self._decayed_lr(dtype)
        step = tf.cast(self.iterations + 1, dtype)
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

    def _resource_apply_sparse(self, grad, var, indices, apply_state=None):
        # Duplicates are summed before this is called; zero rows leave the
        # sums, counts and (with beta = 0) the variable unchanged, so the dense
        # update of the scattered gradient is the sparse one.
        dense = tf.scatter_nd(tf.expand_dims(indices, -1), grad, tf.shape(var, out_type=indices.dtype))
        return self._resource_apply_dense(dense, var, apply_state)

    def get_config(self):
        config = super().get_config()
        config.update(
            {
                "learning_rate": self._serialize_hyperparameter("learning_rate"),
                "beta": self.beta,
                "epsilon": self.epsilon,
                "sparse_counter": self.sparse_counter,
                "momentum": self.momentum,
            }
        )
        return config
