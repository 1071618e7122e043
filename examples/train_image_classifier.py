"""Train an image classifier with a keras_momenta optimizer under any tf.distribute strategy.

    .venv/bin/python examples/train_image_classifier.py --strategy=default|mirrored|multiworker|tpu \\
        [--optimizer am1sgd] [--dataset digits|cifar10] [--epochs 8] [--model-dir DIR]

The same program runs under every strategy: a custom training loop, the way
TPU and multi-worker programs are written (Keras 3.15's own `fit` fails
under `MultiWorkerMirroredStrategy` with more than one worker,
keras-team/keras#20585). It shows what such a loop must do with this
package's optimizers:

* build the optimizer in the strategy's scope before the first step (Keras
  cannot create its state inside `strategy.run`);
* run several steps per call of a compiled function (`--steps-per-loop`,
  what a TPU needs), the step compiled by XLA with `--jit-compile`;
* evaluate and save the optimizer's answer, not the training point, for the
  optimizers that have one (IGT's true iterate, AM1/AM2-SGD option II's
  averages): `load_evaluation_weights` before, `restore_training_weights`
  after, `finalize_variable_values` at the end;
* with `--model-dir`, keep a checkpoint of the model, the optimizer and the
  epoch, and continue from it when run again (the same trajectory).

Strategies:

* default: one device.
* mirrored: every local GPU; on a CPU-only machine `--logical-cpus 2`
  splits the CPU into two devices to try it.
* multiworker: `MultiWorkerMirroredStrategy`, one process per worker, each
  started with its `TF_CONFIG`; without `TF_CONFIG`, one worker.
* tpu: `TPUStrategy` on the TPU named by `--tpu` (`local` on a TPU VM). Not
  run on a TPU here: what the TPU step needs is checked on the CPU (the step
  compiled with XLA, several steps per call, under a strategy); without a
  TPU the program stops with a message saying so.

Data: `digits` (scikit-learn's bundled 8x8 digits, offline) or `cifar10`
(TensorFlow Datasets; `--data-dir` or `TFDS_DATA_DIR` where it is stored).
"""

import argparse
import os
import sys
import tempfile

import numpy as np

os.environ.setdefault("KERAS_BACKEND", "tensorflow")

import keras  # noqa: E402
import tensorflow as tf  # noqa: E402

import keras_momenta as km  # noqa: E402

STRATEGIES = ("default", "mirrored", "multiworker", "tpu")


# Name -> (constructor, default learning rate). The rates train the default
# task (8 epochs of digits: 0.87 to 0.96 test accuracy); they were picked by
# hand from 1e-3, 1e-2, 0.1, 0.3, 1, not tuned for a comparison.
OPTIMIZERS = {
    "am1sgd": (lambda lr: km.AM1SGD(lr, momentum=0.9, amortization=5, option="II"), 0.1),
    "am2sgd": (lambda lr: km.AM2SGD(lr, momentum=0.9, amortization=5, option="II", seed=0), 0.1),
    "expectigrad": (lambda lr: km.Expectigrad(lr), 0.01),
    "igt-sgd": (lambda lr: km.IGT(keras.optimizers.SGD(lr, momentum=0.9)), 0.1),
    "igt-adam": (lambda lr: km.IGT(keras.optimizers.Adam(lr)), 0.001),
    "msvag": (lambda lr: km.MSVAG(lr), 1.0),
    "mssd": (lambda lr: km.MSSD(lr), 0.001),
}


def make_optimizer(name, learning_rate=None):
    constructor, default_rate = OPTIMIZERS[name]
    return constructor(default_rate if learning_rate is None else learning_rate)


def parse_args(argv):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--strategy", choices=STRATEGIES, default="default")
    parser.add_argument("--optimizer", choices=sorted(OPTIMIZERS), default="am1sgd")
    parser.add_argument("--learning-rate", type=float, default=None, help="default: the preset's")
    parser.add_argument("--dataset", choices=("digits", "cifar10"), default="digits")
    parser.add_argument("--data-dir", default=None, help="TFDS data directory (cifar10)")
    parser.add_argument("--epochs", type=int, default=8)
    parser.add_argument("--batch-size", type=int, default=64, help="global batch size")
    parser.add_argument("--steps-per-loop", type=int, default=8, help="steps per compiled call")
    parser.add_argument(
        "--jit-compile", choices=("auto", "on", "off"), default="auto",
        help="compile the step with XLA (auto: on for default and tpu; XLA in replica "
        "context under mirrored and multiworker needs GPUs)",
    )
    parser.add_argument("--model-dir", default=None, help="checkpoints; a rerun continues from the last")
    parser.add_argument("--logical-cpus", type=int, default=0, help="mirrored on a CPU: split it")
    parser.add_argument("--tpu", default="local", help="TPU name or address for --strategy=tpu")
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args(argv)
    if args.steps_per_loop < 1 or args.batch_size < 1 or args.epochs < 0:
        parser.error("--steps-per-loop and --batch-size must be positive, --epochs not negative")
    return args


def make_strategy(args):
    if args.strategy == "default":
        return tf.distribute.get_strategy()
    if args.strategy == "mirrored":
        if args.logical_cpus:
            cpus = tf.config.list_physical_devices("CPU")
            try:
                tf.config.set_logical_device_configuration(
                    cpus[0], [tf.config.LogicalDeviceConfiguration()] * args.logical_cpus
                )
            except RuntimeError:  # devices already initialised (e.g. in a test process)
                pass
            devices = [d.name for d in tf.config.list_logical_devices("CPU")][: args.logical_cpus]
            return tf.distribute.MirroredStrategy(devices)
        return tf.distribute.MirroredStrategy()
    if args.strategy == "multiworker":
        return tf.distribute.MultiWorkerMirroredStrategy()
    try:
        resolver = tf.distribute.cluster_resolver.TPUClusterResolver(tpu=args.tpu)
        tf.config.experimental_connect_to_cluster(resolver)
        tf.tpu.experimental.initialize_tpu_system(resolver)
    except Exception as error:  # every failure to find a TPU means the same here
        raise SystemExit(
            f"--strategy=tpu: no TPU found at --tpu={args.tpu!r} ({type(error).__name__}: {error}). "
            "Run on a Cloud TPU VM (--tpu=local) or name the TPU; on other machines use "
            "--strategy=default, mirrored or multiworker."
        ) from error
    return tf.distribute.TPUStrategy(resolver)


def load_data(args):
    """(train images, train labels, test images, test labels), images in [0, 1]."""
    if args.dataset == "digits":
        from sklearn.datasets import load_digits

        digits = load_digits()
        images = (digits.images[..., None] / 16.0).astype("float32")
        labels = digits.target.astype("int32")
        order = np.random.default_rng(args.seed).permutation(len(labels))
        images, labels = images[order], labels[order]
        split = len(labels) * 4 // 5
        return images[:split], labels[:split], images[split:], labels[split:]
    import tensorflow_datasets as tfds

    def arrays(split):
        data = tfds.as_numpy(
            tfds.load("cifar10", split=split, batch_size=-1, data_dir=args.data_dir)
        )
        return (data["image"] / 255.0).astype("float32"), data["label"].astype("int32")

    return (*arrays("train"), *arrays("test"))


def build_model(input_shape, classes=10):
    inputs = keras.Input(input_shape)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(inputs)
    x = keras.layers.Conv2D(32, 3, padding="same", activation="relu")(x)
    x = keras.layers.MaxPooling2D()(x)
    x = keras.layers.Conv2D(64, 3, padding="same", activation="relu")(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes)(x)
    return keras.Model(inputs, outputs)


def is_chief(strategy):
    resolver = getattr(strategy, "cluster_resolver", None)
    if resolver is None or not resolver.cluster_spec().as_dict():
        return True
    return resolver.task_type in ("chief", None) or (
        resolver.task_type == "worker" and resolver.task_id == 0
        and "chief" not in resolver.cluster_spec().as_dict()
    )


def train(args):
    """Train; returns (test accuracy at the optimizer's answer, final model weights)."""
    strategy = make_strategy(args)
    jit_compile = args.jit_compile == "on" or (
        args.jit_compile == "auto" and args.strategy in ("default", "tpu")
    )
    keras.utils.set_random_seed(args.seed)
    x_train, y_train, x_test, y_test = load_data(args)
    steps_per_epoch = len(x_train) // args.batch_size

    with strategy.scope():
        model = build_model(x_train.shape[1:])
        optimizer = make_optimizer(args.optimizer, args.learning_rate)
        optimizer.build(model.trainable_variables)
        epoch = tf.Variable(0, dtype=tf.int64, trainable=False)
        accuracy = keras.metrics.SparseCategoricalAccuracy()
    loss_fn = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction="sum")

    checkpoint = manager = None
    if args.model_dir:
        checkpoint = tf.train.Checkpoint(model=model, optimizer=optimizer, epoch=epoch)
        # Every worker writes (the save is collective); only the chief's copy is kept.
        directory = args.model_dir if is_chief(strategy) else tempfile.mkdtemp()
        manager = tf.train.CheckpointManager(checkpoint, directory, max_to_keep=2)
        latest = tf.train.latest_checkpoint(args.model_dir)
        if latest:
            checkpoint.restore(latest).assert_existing_objects_matched()
            print(f"continuing from {latest} (epoch {int(epoch.numpy())})")

    def replica_step(images, labels):
        with tf.GradientTape() as tape:
            loss = loss_fn(labels, model(images, training=True)) / args.batch_size
        optimizer.apply(tape.gradient(loss, model.trainable_variables), model.trainable_variables)
        return loss

    step = tf.function(replica_step, jit_compile=True) if jit_compile else replica_step

    @tf.function
    def train_steps(iterator, steps):
        total = tf.constant(0.0)
        for _ in tf.range(steps):
            losses = strategy.run(step, args=next(iterator))
            total += strategy.reduce(tf.distribute.ReduceOp.SUM, losses, axis=None)
        return total / tf.cast(steps, tf.float32)

    @tf.function
    def evaluate_batch(images, labels):
        def replica_eval(images, labels):
            accuracy.update_state(labels, model(images, training=False))

        strategy.run(replica_eval, args=(images, labels))

    def accuracy_of_model():
        accuracy.reset_state()
        test = tf.data.Dataset.from_tensor_slices((x_test, y_test)).batch(args.batch_size)
        for images, labels in strategy.experimental_distribute_dataset(test):
            evaluate_batch(images, labels)
        return float(accuracy.result())

    def evaluate():
        # The optimizer's answer is evaluated (IGT's and AM option II's differ
        # from the training point), then training goes on from where it was.
        optimizer.load_evaluation_weights(model.trainable_variables)
        try:
            return accuracy_of_model()
        finally:
            optimizer.restore_training_weights(model.trainable_variables)

    while int(epoch.numpy()) < args.epochs:
        # A fixed order per epoch, so that a continued run sees the same batches.
        dataset = (
            tf.data.Dataset.from_tensor_slices((x_train, y_train))
            .shuffle(len(x_train), seed=args.seed + int(epoch.numpy()))
            .batch(args.batch_size, drop_remainder=True)  # static shapes for XLA and TPUs
        )
        iterator = iter(strategy.experimental_distribute_dataset(dataset))
        losses = []
        for start in range(0, steps_per_epoch, args.steps_per_loop):
            steps = min(args.steps_per_loop, steps_per_epoch - start)
            losses.append(float(train_steps(iterator, tf.constant(steps))))
        epoch.assign_add(1)
        if manager is not None:
            manager.save()
        print(f"epoch {int(epoch.numpy())}: train loss {np.mean(losses):.4f}, "
              f"test accuracy {evaluate():.4f}", flush=True)

    optimizer.finalize_variable_values(model.trainable_variables)  # the model takes the answer
    accuracy_at_answer = accuracy_of_model()
    if args.model_dir and is_chief(strategy):
        path = os.path.join(args.model_dir, "model.keras")
        model.save(path)
        print(f"saved the answer to {path}")
    print(f"final test accuracy {accuracy_at_answer:.4f} ({args.optimizer}, {args.strategy})")
    return accuracy_at_answer, [np.asarray(w) for w in model.get_weights()]


def main(argv=None):
    return train(parse_args(argv))


if __name__ == "__main__":
    main(sys.argv[1:])
