"""Expectigrad (Daley & Amato 2020): its experiments as runner tasks."""

import tensorflow as tf

from keras_momenta.compare import data
from keras_momenta.compare.models import mlp
from keras_momenta.compare.tasks import Task

MNIST_OPTIMIZERS = ("expectigrad", "adam", "rmsprop", "adadelta")


def flat_images(image, label):
    return tf.reshape(tf.cast(image, tf.float32) / 255.0, [-1]), label


def mnist(data_dir=None):
    """MNIST from TFDS, flattened to 784 features in [0, 1]; the last 10% of
    the training set is the validation set."""
    return data.tfds_splits("mnist", data_dir).map(flat_images)


TASKS = [
    Task(
        name="mnist_mlp",
        paper="expectigrad",
        stands_for="Expectigrad §6, MNIST MLP",
        description="MNIST through TFDS, MLP 784-1000-1000-10, batch 128",
        load=mnist,
        build_model=lambda: mlp(784, (1000, 1000)),
        epochs=150,
        batch_size=128,
        optimizers=MNIST_OPTIMIZERS,
        data="TFDS mnist (downloads, or prepared in --data-dir)",
    ),
]
