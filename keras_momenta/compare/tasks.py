"""Reference tasks of the comparison runner.

A task provides batched `tf.data` pipelines for a seed, a model builder and
its training settings. `mnist1d_mlp` (the default) needs no download: the
`mnist1d` package generates MNIST-1D offline. `mnist_mlp` reads MNIST through
TensorFlow Datasets (`tfds.load`), which downloads it unless it is already in
`data_dir` (or TFDS's default data directory).
"""

import dataclasses
import functools
from typing import Callable

import keras
import numpy as np
import tensorflow as tf


@dataclasses.dataclass(frozen=True)
class Task:
    name: str
    description: str
    # seed -> (train dataset, test dataset), both batched (features, label)
    datasets: Callable[[int], tuple]
    build_model: Callable[[], keras.Model]
    epochs: int
    batch_size: int
    default_optimizers: tuple
    loss: str = "sparse_categorical_crossentropy"
    metric: str = "accuracy"


def _pipeline(features, labels, batch_size, shuffle_seed=None):
    dataset = tf.data.Dataset.from_tensor_slices((features, labels))
    if shuffle_seed is not None:
        dataset = dataset.shuffle(len(features), seed=shuffle_seed, reshuffle_each_iteration=True)
    return dataset.batch(batch_size).prefetch(tf.data.AUTOTUNE)


@functools.lru_cache(maxsize=1)
def mnist1d_arrays():
    """MNIST-1D (4000 train / 1000 test, 40 features, 10 classes), offline."""
    from mnist1d.data import get_dataset_args, make_dataset

    data = make_dataset(get_dataset_args())
    return (
        data["x"].astype(np.float32),
        data["y"].astype(np.int64),
        data["x_test"].astype(np.float32),
        data["y_test"].astype(np.int64),
    )


def mnist1d_datasets(seed, batch_size):
    x, y, x_test, y_test = mnist1d_arrays()
    return _pipeline(x, y, batch_size, shuffle_seed=seed), _pipeline(x_test, y_test, 1000)


def mlp(input_dim, hidden, classes=10):
    layers = [keras.Input((input_dim,))]
    layers += [keras.layers.Dense(units, activation="relu") for units in hidden]
    layers += [keras.layers.Dense(classes, activation="softmax")]
    return keras.Sequential(layers)


def mnist_datasets(seed, batch_size, data_dir=None):
    """MNIST from TFDS, flattened to 784 features in [0, 1]."""
    import tensorflow_datasets as tfds

    train, test = tfds.load(
        "mnist", split=["train", "test"], as_supervised=True, data_dir=data_dir
    )

    def prepare(image, label):
        return tf.reshape(tf.cast(image, tf.float32) / 255.0, [-1]), label

    train = (
        train.map(prepare, num_parallel_calls=tf.data.AUTOTUNE)
        .shuffle(10_000, seed=seed)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = test.map(prepare).batch(1000).prefetch(tf.data.AUTOTUNE)
    return train, test


FOUNDATION_OPTIMIZERS = ("expectigrad", "adam", "sgd_momentum", "amsgrad")

TASKS = {
    "mnist1d_mlp": Task(
        name="mnist1d_mlp",
        description="MNIST-1D (generated offline), MLP 40-100-100-10, batch 100",
        datasets=lambda seed: mnist1d_datasets(seed, batch_size=100),
        build_model=lambda: mlp(40, (100, 100)),
        epochs=40,
        batch_size=100,
        default_optimizers=FOUNDATION_OPTIMIZERS,
    ),
    "mnist_mlp": Task(
        name="mnist_mlp",
        description="MNIST through TFDS, MLP 784-1000-1000-10 (Expectigrad §4.2), batch 128",
        datasets=lambda seed: mnist_datasets(seed, batch_size=128),
        build_model=lambda: mlp(784, (1000, 1000)),
        epochs=20,
        batch_size=128,
        default_optimizers=FOUNDATION_OPTIMIZERS,
    ),
}
