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

from keras_momenta import _backend
from keras_momenta._base import state_dtype
from keras_momenta.output_point import unwrap


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

    It needs the TensorFlow backend (a `ValueError` says so on others).
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
        _backend.check_per_example_gradients()
        super().__init__(**kwargs)
        self.inner_model = inner_model

    def call(self, inputs, training=None):
        return self.inner_model(inputs, training=training)

    def _refuse_unsupported(self):
        inner = unwrap(self.optimizer)
        if getattr(inner, "variance", None) != "minibatch":
            raise ValueError(
                "`MinibatchVarianceModel` trains with an optimizer that takes "
                "per-example statistics: `keras_momenta.MSVAG(..., variance='minibatch')` "
                f"or `keras_momenta.AdamStar(..., variance='minibatch')`; got {type(inner).__name__}."
            )
        unsupported = _backend.layers_with_batch_or_random_state(self.inner_model)
        if unsupported:
            layer = unsupported[0]
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
        self._refuse_unsupported()
        x, y, sample_weight = keras.utils.unpack_x_y_sample_weight(data)
        optimizer = self.optimizer
        variables = self.trainable_variables
        examples = {"x": x, "y": y, "sample_weight": sample_weight}
        examples = {key: value for key, value in examples.items() if value is not None}

        def one_example(batch_of_one):
            y_pred = self(batch_of_one["x"], training=True)
            loss = self.compute_loss(
                x=batch_of_one["x"],
                y=batch_of_one.get("y"),
                y_pred=y_pred,
                sample_weight=batch_of_one.get("sample_weight"),
                training=True,
            )
            return y_pred, loss, optimizer.scale_loss(loss)

        # A variable without a gradient gets None, as in Keras's own train step.
        y_pred, losses, per_example = _backend.per_example_gradients(one_example, examples, variables)
        batch_size = ops.shape(losses)[0]
        gradients = [None if g is None else ops.mean(g, axis=0) for g in per_example]
        # Per-example losses carry the loss scale and, under a strategy,
        # Keras's 1/replicas factor; the statistics are of the plain losses.
        replicas = _backend.replicas_in_sync()
        scale = ops.convert_to_tensor(optimizer.scale_loss(1.0), "float32") / replicas
        square_sums = []
        for g in per_example:
            if g is None:
                square_sums.append(None)
                continue
            dtype = state_dtype(g.dtype)
            g = ops.cast(g, dtype)
            square_sums.append(ops.divide(ops.sum(ops.square(g), axis=0), ops.square(ops.cast(scale, dtype))))
        # A step that a LossScaleOptimizer skips leaves its statistics unused,
        # and the next call replaces them.
        unwrap(optimizer).add_minibatch_statistics(square_sums, batch_size, variables)
        optimizer.apply(gradients, variables)

        _backend.loss_tracker(self).update_state(
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
