"""Dissecting Adam (Balles & Hennig 2018): its experiments as runner tasks.

The paper (Appendix A.1) gives the architectures, batch sizes and schedules
but not the L2 factors, the number of steps on MNIST and CIFAR-10, or the
exact augmentation: those here are our choices (marked).
"""

import tensorflow as tf

from keras_momenta.compare import data
from keras_momenta.compare.models import MNIST_L2, all_cnn_c, cifar10_cnn, mlp
from keras_momenta.compare.tasks import Task
from keras_momenta.compare.tasks.expectigrad import mnist

DISSECTING_OPTIMIZERS = ("sgd_momentum", "m_ssd", "m_svag", "adam", "adam_star", "m_svag_mb")


def _standardise(image, label):
    return tf.image.per_image_standardization(image), label


def cifar(name, data_dir=None):
    """CIFAR-10 or CIFAR-100 from TFDS, standardised per image (the training
    images after augmentation: `augment_cifar`)."""
    return data.tfds_splits(name, data_dir).map_evaluation(_standardise)


def augment_cifar(image, label, seed):
    """The paper's augmentation: random crops (of the image padded by 4),
    left-right mirroring and colour distortion (strengths ours), drawn with
    stateless ops from `seed`."""
    seeds = tf.random.experimental.stateless_split(seed, 5)
    image = tf.image.convert_image_dtype(image, tf.float32)
    image = tf.image.resize_with_crop_or_pad(image, 40, 40)
    image = tf.image.stateless_random_crop(image, [32, 32, 3], seed=seeds[0])
    image = tf.image.stateless_random_flip_left_right(image, seed=seeds[1])
    image = tf.image.stateless_random_brightness(image, 0.25, seed=seeds[2])
    image = tf.image.stateless_random_saturation(image, 0.5, 1.5, seed=seeds[3])
    image = tf.image.stateless_random_contrast(image, 0.5, 1.5, seed=seeds[4])
    return _standardise(image, label)


TASKS = [
    Task(
        name="mnist_mlp_dissecting",
        paper="dissecting_adam",
        stands_for="Dissecting Adam Fig. 3 (P1), Appendix A.1",
        description="MNIST through TFDS, MLP 784-1000-500-100-10 with L2 1e-4 on the weights, batch 128",
        load=mnist,
        build_model=lambda: mlp(784, (1000, 500, 100), l2=MNIST_L2),
        epochs=20,  # our choice
        batch_size=128,
        optimizers=DISSECTING_OPTIMIZERS,
        data="TFDS mnist (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="cifar10_cnn",
        paper="dissecting_adam",
        stands_for="Dissecting Adam Fig. 3 (P2), Appendix A.1",
        description="CIFAR-10 through TFDS, augmented; CNN 3 conv + 2 dense with L2 5e-4, batch 256",
        load=lambda data_dir=None: cifar("cifar10", data_dir),
        build_model=cifar10_cnn,
        epochs=100,  # our choice
        batch_size=256,
        optimizers=DISSECTING_OPTIMIZERS,
        augment=augment_cifar,
        data="TFDS cifar10 (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="cifar100_allcnn",
        paper="dissecting_adam",
        stands_for="Dissecting Adam Fig. 3 (P3), Appendix A.1",
        description=(
            "CIFAR-100 through TFDS, augmented; All-CNN-C with L2 5e-4, step size ÷10 "
            "after 40k and 50k of 58.6k steps, batch 256"
        ),
        load=lambda data_dir=None: cifar("cifar100", data_dir),
        build_model=all_cnn_c,
        epochs=300,
        batch_size=256,
        # All-CNN-C has dropout: no per-example variance estimates.
        optimizers=tuple(name for name in DISSECTING_OPTIMIZERS if not name.endswith("_mb")),
        augment=augment_cifar,
        schedule="step",
        decay_at=(40_000 / 58_800, 50_000 / 58_800),
        data="TFDS cifar100 (downloads, or prepared in --data-dir)",
    ),
]
