"""Training under a `tf.distribute` strategy, as one worker of a multi-worker run or in one process.

`tests/test_multiworker.py` starts two processes of

    TF_CONFIG=... python -m tests.multiworker OUT_DIR CASE_ID ...

which train each case under `MultiWorkerMirroredStrategy` (one replica per
worker, on 127.0.0.1) with a custom loop, and with `model.fit` where Keras
supports it, and save the final model weights and optimizer state to
`OUT_DIR/worker<i>.npz`. The test compares the two workers with each other
and with `train` under a one-device strategy in its own process, with the
same global batch.

Keras 3.15's own `fit` fails under `MultiWorkerMirroredStrategy` with more
than one worker, for every optimizer (its `_maybe_symbolic_build` reduces the
first batch, a tuple of per-replica values; keras-team/keras#20585). Each
worker first runs that `fit` with Keras's SGD and records what happened
("keras_fit_error"), so that the test sees when Keras fixes it and then
checks `fit` too.
"""

import json
import os
import sys

import numpy as np

GLOBAL_BATCH = 16
EPOCHS = 3


def _dataset(x, y):
    import tensorflow as tf

    dataset = tf.data.Dataset.from_tensor_slices((x, y)).batch(GLOBAL_BATCH)
    options = tf.data.Options()
    # Each global batch is split into per-replica batches, one per worker.
    options.experimental_distribute.auto_shard_policy = tf.data.experimental.AutoShardPolicy.DATA
    return dataset.with_options(options)


def _state(model, optimizer):
    """[(name, value)] of the model's weights and the optimizer's variables."""
    return [(w.path, np.asarray(w.numpy())) for w in model.weights] + [
        (v.path, np.asarray(v.numpy())) for v in optimizer.variables
    ]


def train_with_fit(strategy, case, x, y):
    from tests.harness import case_model

    with strategy.scope():
        model = case_model(case)
        model.compile(optimizer=case.make(), loss="mse")
    model.fit(_dataset(x, y), epochs=EPOCHS, verbose=0)
    return _state(model, model.optimizer)


def train_with_custom_loop(strategy, case, x, y):
    """A custom loop, with the optimizer built eagerly in the strategy's scope."""
    import tensorflow as tf

    from tests.harness import linear_model

    with strategy.scope():
        model = linear_model()
        optimizer = case.make()
        optimizer.build(model.trainable_variables)

    @tf.function
    def step(batch):
        def replica_step(xb, yb):
            with tf.GradientTape() as tape:
                residual = model(xb, training=True) - yb
                loss = tf.reduce_sum(tf.square(residual)) / GLOBAL_BATCH
            gradients = tape.gradient(loss, model.trainable_variables)
            if case.statistics is not None:
                # This replica's Σₖ of the squared per-example gradients of
                # (prediction − y)², 2rₖxₖ and 2rₖ; summed across replicas.
                square_sums = [
                    4 * tf.reduce_sum(tf.square(residual * xb), axis=0)[:, None],
                    4 * tf.reduce_sum(tf.square(residual), axis=0),
                ]
                count = tf.cast(tf.shape(xb)[0], xb.dtype)
                optimizer.add_minibatch_statistics(square_sums, count, model.trainable_variables)
            optimizer.apply(gradients, model.trainable_variables)

        strategy.run(replica_step, args=batch)

    batches = strategy.experimental_distribute_dataset(_dataset(x, y))
    for _ in range(EPOCHS):
        for batch in batches:
            step(batch)
    optimizer.finalize_variable_values(model.trainable_variables)
    return _state(model, optimizer)


def keras_fit_error(strategy):
    """The error of Keras's own `fit` with Keras's SGD under `strategy`, or ""."""
    import keras

    from tests.harness import least_squares_data, linear_model

    x, y = least_squares_data()
    with strategy.scope():
        model = linear_model()
        model.compile(optimizer=keras.optimizers.SGD(0.01, momentum=0.9), loss="mse")
    try:
        model.fit(_dataset(x, y), epochs=1, verbose=0)
    except Exception as error:  # reported to the test, which knows which it expects
        return f"{type(error).__name__}: {error}"
    return ""


def train(strategy, case, with_fit=True):
    """{"fit": state, "loop": state}."""
    import keras

    from tests.harness import least_squares_data

    keras.config.set_floatx("float64")
    try:
        x, y = least_squares_data()
        results = {}
        if with_fit:
            results["fit"] = train_with_fit(strategy, case, x, y)
        results["loop"] = train_with_custom_loop(strategy, case, x, y)
        return results
    finally:
        keras.config.set_floatx("float32")


def main(argv):
    os.environ.setdefault("KERAS_BACKEND", "tensorflow")
    import tensorflow as tf

    from tests.registry import CASES

    import keras

    keras.config.disable_traceback_filtering()  # a failure's whole story, in the log
    keras.config.set_floatx("float64")  # before the first model: Keras keeps its dtype policy
    out_dir, case_ids = argv[0], argv[1:]
    strategy = tf.distribute.MultiWorkerMirroredStrategy()
    task = json.loads(os.environ["TF_CONFIG"])["task"]["index"]
    fit_error = keras_fit_error(strategy)
    arrays = {"keras_fit_error": np.array(fit_error)}
    for case in CASES:
        if case.id not in case_ids:
            continue
        for mode, state in train(strategy, case, with_fit=not fit_error).items():
            for position, (_, value) in enumerate(state):
                arrays[f"{case.id}|{mode}|{position}"] = value
    np.savez(os.path.join(out_dir, f"worker{task}.npz"), **arrays)


if __name__ == "__main__":
    main(sys.argv[1:])
