"""Per-example gradient statistics for `variance="minibatch"` (TensorFlow backend).

The mini-batch variance estimate of Balles & Hennig (2018), Eq. 44, needs
Σₖ (∂ℓₖ/∂θ)² over the examples k of each batch, which a Keras train step does
not compute. `MinibatchVarianceModel` wraps a model so that `fit` computes the
per-example gradients with `tf.vectorized_map` (one vectorised forward and
backward pass over the batch), trains on their mean and hands the sum of their
squares to the optimizer.
"""

import keras
from keras import ops


def add_across_replicas(optimizer, variables, values):
    """`variables[i] += values[i]`, the values summed over replicas.

    Called in replica context under a `tf.distribute` strategy, the values are
    all-reduced and every copy of each variable is written through the
    strategy, as Keras does with gradients, so the copies stay equal.
    """
    if keras.backend.backend() != "tensorflow":
        for variable, value in zip(variables, values):
            optimizer.assign_add(variable, value)
        return
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is not None and values:
        values = context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    def add(distribution, values):
        for variable, value in zip(variables, values):
            distribution.extended.update(
                getattr(variable, "value", variable),
                lambda v, x: v.assign_add(x),
                args=(value,),
                group=False,
            )

    tf.__internal__.distribute.interim.maybe_merge_call(
        add, optimizer._distribution_strategy, values
    )


def _inner_optimizer(optimizer):
    return getattr(optimizer, "inner_optimizer", optimizer)


@keras.saving.register_keras_serializable(package="keras_momenta")
class MinibatchVarianceModel(keras.Model):
    """`inner_model`, trained with per-example gradient statistics.

    `fit` computes, for every batch, the gradient of each example's loss (the
    example's share of the compiled loss plus the regularization losses), and
    then updates with their mean, which is the ordinary mini-batch gradient,
    after handing Σₖ (∂ℓₖ/∂θ)² and the batch size to the optimizer through
    `add_minibatch_statistics`. It works with `jit_compile=True`, mixed
    precision and `tf.distribute` strategies (the sums and the batch size are
    then summed across replicas). Evaluation and prediction are those of
    `inner_model`.

        model = km.MinibatchVarianceModel(model)
        model.compile(optimizer=km.MSVAG(0.01, variance="minibatch"), loss=...)
        model.fit(...)

    The cost is that of holding B per-example gradients (B × the number of
    parameters) at once; see `benchmarks/minibatch_cost.py`.

    Refused, with a `ValueError` when `fit` starts:
    - an optimizer without `variance="minibatch"`;
    - layers whose training output for one example depends on the others
      (`BatchNormalization`) or that draw random numbers (`Dropout`,
      `GaussianNoise`, random augmentation layers): vectorised over the batch,
      every example would get the same random draw;
    - a `keras.losses.Loss` whose reduction is not "sum_over_batch_size"
      (the training loss must be the mean of the per-example losses).

    Args:
        inner_model: the `keras.Model` to train.
        **kwargs: `keras.Model` arguments (`name`, ...).
    """

    def __init__(self, inner_model, **kwargs):
        super().__init__(**kwargs)
        self.inner_model = inner_model

    def call(self, inputs, training=None):
        return self.inner_model(inputs, training=training)

    def _refuse_unsupported(self):
        inner = _inner_optimizer(self.optimizer)
        if getattr(inner, "variance", None) != "minibatch":
            raise ValueError(
                "`MinibatchVarianceModel` trains with an optimizer that takes "
                "per-example statistics: `keras_momenta.MSVAG(..., variance='minibatch')` "
                f"or `keras_momenta.AdamStar(..., variance='minibatch')`; got {type(inner).__name__}."
            )
        for layer in self.inner_model._flatten_layers(include_self=False):
            if isinstance(layer, keras.layers.BatchNormalization) or layer._seed_generators:
                raise ValueError(
                    f"`MinibatchVarianceModel` cannot compute per-example gradients "
                    f"through layer {layer.name!r} ({type(layer).__name__}): vectorised "
                    "over the batch, its training output would not be the one of the "
                    "whole batch (batch statistics or random draws). Remove it, or use "
                    "variance='moving_average'."
                )
        for loss_object in keras.tree.flatten(self.loss):
            reduction = getattr(loss_object, "reduction", "sum_over_batch_size")
            if isinstance(loss_object, keras.losses.Loss) and reduction != "sum_over_batch_size":
                raise ValueError(
                    "`MinibatchVarianceModel` needs losses with reduction "
                    f"'sum_over_batch_size' (a mean over examples); got {reduction!r}."
                )

    def train_step(self, data):
        import tensorflow as tf

        self._refuse_unsupported()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        optimizer = self.optimizer
        variables = self.trainable_variables
        examples = {"x": x, "y": y, "sample_weight": sample_weight}
        examples = {key: value for key, value in examples.items() if value is not None}

        def one_example(example):
            batch_of_one = keras.tree.map_structure(lambda t: t[None], example)
            with tf.GradientTape() as tape:
                y_pred = self(batch_of_one["x"], training=True)
                loss = self.compute_loss(
                    x=batch_of_one["x"],
                    y=batch_of_one.get("y"),
                    y_pred=y_pred,
                    sample_weight=batch_of_one.get("sample_weight"),
                    training=True,
                )
                scaled_loss = optimizer.scale_loss(loss)
            gradients = tape.gradient(
                scaled_loss, variables, unconnected_gradients=tf.UnconnectedGradients.ZERO
            )
            gradients = [ops.convert_to_tensor(g) for g in gradients]  # IndexedSlices
            return keras.tree.map_structure(lambda t: t[0], y_pred), loss, gradients

        y_pred, losses, per_example = tf.vectorized_map(one_example, examples)
        batch_size = ops.shape(losses)[0]
        gradients = [ops.mean(g, axis=0) for g in per_example]
        # Per-example losses carry the loss scale and, under a strategy,
        # Keras's 1/replicas factor; the statistics are of the plain losses.
        replicas = tf.distribute.get_strategy().num_replicas_in_sync
        scale = ops.convert_to_tensor(optimizer.scale_loss(1.0), "float32") / replicas
        square_sums = []
        for g in per_example:
            dtype = "float32" if g.dtype in ("float16", "bfloat16") else g.dtype
            g = ops.cast(g, dtype)
            square_sums.append(ops.divide(ops.sum(ops.square(g), axis=0), ops.square(ops.cast(scale, dtype))))
        count = ops.cast(batch_size, "float32")
        if isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
            # A LossScaleOptimizer skips this step: so do its statistics.
            finite = optimizer.check_finite(gradients)
            square_sums = [ops.where(finite, s, ops.zeros_like(s)) for s in square_sums]
            count = ops.where(finite, count, 0.0)
        _inner_optimizer(optimizer).add_minibatch_statistics(square_sums, count, variables)
        optimizer.apply(gradients, variables)

        self._loss_tracker.update_state(
            ops.multiply(ops.mean(losses), replicas), sample_weight=batch_size
        )
        return self.compute_metrics(x, y, y_pred, sample_weight=sample_weight)

    def get_config(self):
        return {
            "name": self.name,
            "trainable": self.trainable,
            "inner_model": keras.saving.serialize_keras_object(self.inner_model),
        }

    @classmethod
    def from_config(cls, config, custom_objects=None):
        config = dict(config)
        inner_model = keras.saving.deserialize_keras_object(
            config.pop("inner_model"), custom_objects=custom_objects
        )
        return cls(inner_model, **config)
