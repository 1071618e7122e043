"""Callbacks for optimizers whose answer is not the training point."""

import keras

from keras_momenta._base import check_in_range
from keras_momenta.output_point import OutputPointOptimizer, unwrap


class SwapEvaluationWeights(keras.callbacks.Callback):
    """Put the optimizer's answer into the model around evaluation.

    Some optimizers report an answer other than the point where gradients are
    taken: `km.IGT`'s true iterate, the averages of AM1/AM2-SGD option II.
    This callback puts that answer into the model before `evaluate` and
    `predict` (including `fit`'s validation) and the training point back
    afterwards, in place and exactly, so training continues unchanged. At the
    start of `fit` it puts the training point back if the answer is in the
    model (after an earlier `fit`, a reload of a file saved with the answer
    in, or an interrupted evaluation), so that the new `fit` continues the
    run exactly; weights changed from outside in between are kept, and their
    run starts afresh there. It works under `tf.distribute` strategies and
    XLA, and sees through `keras.optimizers.LossScaleOptimizer`. For
    optimizers without a separate answer it does nothing.

    With `swap_on_epoch=True` the answer is also in the model from the end of
    each epoch to the start of the next, so callbacks listed *after* this one
    (e.g. `keras.callbacks.ModelCheckpoint`) see and save it. Such a file
    holds the answer as model weights and the training point in the optimizer
    state, and says so in that state: reloaded, its `evaluation_weights` are
    the answer and a further `fit` (with this callback) continues exactly.

    Example:

    ```python
    model.compile(optimizer=km.IGT(keras.optimizers.SGD(0.1)), loss="mse")
    model.fit(x, y, validation_data=(x_val, y_val),
              callbacks=[km.callbacks.SwapEvaluationWeights()])
    ```
    """

    def __init__(self, swap_on_epoch=False):
        super().__init__()
        if not isinstance(swap_on_epoch, bool):
            raise ValueError(f"`swap_on_epoch` must be True or False; got {swap_on_epoch!r}.")
        self.swap_on_epoch = swap_on_epoch
        self._loaded_for_evaluation = False

    def _optimizer(self):
        optimizer = unwrap(self.model.optimizer)
        if isinstance(optimizer, OutputPointOptimizer) and optimizer.built:
            return optimizer
        return None

    def _load_answer(self):
        optimizer = self._optimizer()
        if optimizer is None:
            return False
        loaded = not optimizer.evaluation_weights_in_model
        optimizer.load_evaluation_weights(self.model.trainable_variables)
        return loaded

    def _restore_training_point(self):
        optimizer = self._optimizer()
        if optimizer is not None:
            optimizer.restore_training_weights(self.model.trainable_variables)

    def on_train_begin(self, logs=None):
        self._restore_training_point()

    def on_epoch_begin(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._restore_training_point()

    def on_epoch_end(self, epoch, logs=None):
        if self.swap_on_epoch:
            self._load_answer()

    def on_test_begin(self, logs=None):
        self._loaded_for_evaluation = self._load_answer()

    def on_test_end(self, logs=None):
        # Only what this callback put in: after `fit` the answer stays.
        if self._loaded_for_evaluation:
            self._restore_training_point()
        self._loaded_for_evaluation = False

    on_predict_begin = on_test_begin
    on_predict_end = on_test_end


class RestartOnLearningRateDrop(keras.callbacks.Callback):
    """Restart AM1-SGD's and AM2-SGD's amortization after a learning-rate drop.

    Averages taken across a large learning-rate reduction mix iterates of
    very different step sizes and can give a false momentum; the paper
    (Section 6.1) restarts the method after each reduction. With this
    callback the optimizer restarts itself, inside the training step, at
    every step whose learning rate (a schedule's value at that step, or the
    value that `keras.callbacks.ReduceLROnPlateau` or `LearningRateScheduler`
    set) has fallen to `factor` times the highest rate since the last
    restart, or lower. With a smooth decay (cosine, exponential) that means
    one restart each time the rate has fallen by `factor`, not one per step.

    Nothing is read back from the device during an epoch (the test runs in
    the step: `optimizer.restart_on_rate_drop(factor)`), so the callback
    costs nothing on TPUs and with `steps_per_execution > 1`, where drops are
    still acted on at the exact step. The reference rate and the restarts are
    optimizer state and survive checkpoints. Optimizers without
    `restart_on_rate_drop` are left alone; `LossScaleOptimizer` is seen
    through.

    Args:
        factor: restart when the rate is at most `factor` × the reference
            rate; in (0, 1). The default 0.5 catches the usual step
            reductions (×0.1, ×0.2, ×0.5).
        verbose: 1 prints a line per restart at the end of each epoch.

    Attributes:
        restart_steps: the optimizer steps (`iterations` before the step that
            restarted) of the restarts during this callback's `fit` calls,
            read at the end of each epoch (of the last 16 restarts of an
            epoch, if there were more).

    Example:

    ```python
    model.compile(optimizer=km.AM1SGD(0.1, momentum=0.9, amortization=5), loss="mse")
    model.fit(x, y, epochs=90, callbacks=[
        keras.callbacks.ReduceLROnPlateau(factor=0.1, patience=5),
        km.callbacks.RestartOnLearningRateDrop(),
    ])
    ```
    """

    def __init__(self, factor=0.5, verbose=0):
        super().__init__()
        check_in_range("factor", factor, 0.0, 1.0, low_closed=False)
        self.factor = float(factor)
        self.verbose = verbose
        self.restart_steps = []
        self._restarts_seen = None

    def _optimizer(self):
        optimizer = unwrap(self.model.optimizer)
        return optimizer if hasattr(optimizer, "restart_on_rate_drop") else None

    def on_train_begin(self, logs=None):
        optimizer = self._optimizer()
        if optimizer is not None:
            optimizer.restart_on_rate_drop(self.factor)
            self._restarts_seen = optimizer.restart_record()[0]

    def on_epoch_end(self, epoch, logs=None):
        self._collect()

    def on_train_end(self, logs=None):
        self._collect()
        optimizer = self._optimizer()
        if optimizer is not None:
            optimizer.restart_on_rate_drop(None)

    def _collect(self):
        optimizer = self._optimizer()
        if optimizer is None:
            return
        count, steps = optimizer.restart_record()
        unseen = count - self._restarts_seen
        new = steps[-unseen:] if unseen else []
        self._restarts_seen = count
        self.restart_steps.extend(new)
        if self.verbose:
            for step in new:
                print(f"RestartOnLearningRateDrop: restarted at step {step}")
