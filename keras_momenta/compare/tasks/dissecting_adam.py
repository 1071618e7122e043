"""Dissecting Adam (Balles & Hennig 2018): its experiments as runner tasks.

The paper (§4.1, Appendix A) gives the architectures, batch sizes and
schedules but not the L2 factors, the number of steps (or epochs), or the
exact augmentation: those here are our choices (marked). Its problems P1
(MNIST MLP), P2 (CIFAR-10 CNN) and P3 (CIFAR-100 All-CNN-C) are Fig. 3; the
reduced tasks stand in for them offline. Adam's ε is the paper's 1e-8 only
in an entry that sets it (the "adam" entry keeps Keras's 1e-7).
"""

import math

import keras
import tensorflow as tf

from keras_momenta.compare import data
from keras_momenta.compare.models import CIFAR_L2, MNIST_L2, all_cnn_c, cifar10_cnn, mlp
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


# CIFAR-100: the step size drops ÷10 after 40k and 50k steps (Appendix A.1).
# With 45,000 training images (10% held out for validation) and batch 256
# an epoch is 176 steps; 341 epochs (60,016 steps, our choice: 10k steps
# past the last drop) put the drops at steps 40,000 and 50,000 exactly.
CIFAR100_STEPS_PER_EPOCH = math.ceil(45_000 / 256)
CIFAR100_EPOCHS = 341
CIFAR100_DROPS = (40_000, 50_000)


def small_cnn_digits(l2=CIFAR_L2):
    """P2's CNN shrunk for 8×8 digits: convolutions of 32 (3×3), 48 and 64
    filters (3×3), the first two followed by 3×3 max-pooling with stride 2,
    then dense 128 and 64 and softmax 10; ReLU, L2 on the weights only."""
    regularizer = keras.regularizers.L2(l2)
    conv = lambda filters: keras.layers.Conv2D(  # noqa: E731
        filters, 3, padding="same", activation="relu", kernel_regularizer=regularizer
    )
    pool = lambda: keras.layers.MaxPooling2D(3, strides=2, padding="same")  # noqa: E731
    dense = lambda units, activation="relu": keras.layers.Dense(  # noqa: E731
        units, activation=activation, kernel_regularizer=regularizer
    )
    return keras.Sequential([
        keras.Input((8, 8, 1)),
        conv(32), pool(), conv(48), pool(), conv(64),
        keras.layers.Flatten(),
        dense(128), dense(64), dense(10, activation="softmax"),
    ])


def small_all_cnn_digits(l2=CIFAR_L2):
    """P3's All-CNN-C shrunk for 8×8 digits: the same pattern (dropout 0.2 on
    the input and 0.5 after each stride-2 convolution, no pooling, 1×1
    convolutions and global average pooling at the end) with 32 and 64
    filters and one convolution fewer per stage."""
    def conv(filters, size=3, strides=1, padding="same", activation="relu"):
        return keras.layers.Conv2D(
            filters, size, strides=strides, padding=padding, activation=activation,
            kernel_regularizer=keras.regularizers.L2(l2),
        )

    return keras.Sequential([
        keras.Input((8, 8, 1)),
        keras.layers.Dropout(0.2),
        conv(32), conv(32, strides=2),
        keras.layers.Dropout(0.5),
        conv(64), conv(64, strides=2),
        keras.layers.Dropout(0.5),
        conv(64, 2, padding="valid"), conv(64, 1), conv(10, 1, activation=None),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Activation("softmax"),
    ])


def augment_digits(image, label, seed):
    """Digits' stand-in for the CIFAR augmentation: a random shift of at
    most one pixel and a random contrast change (no mirroring for digits)."""
    crop_seed, contrast_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.resize_with_crop_or_pad(image, 10, 10)
    image = tf.image.stateless_random_crop(image, [8, 8, 1], seed=crop_seed)
    return tf.image.stateless_random_contrast(image, 0.7, 1.3, seed=contrast_seed), label


def _digits_images(data_dir=None):
    return data.digits(data_dir, image=True)


WITHOUT_MINIBATCH = tuple(name for name in DISSECTING_OPTIMIZERS if not name.endswith("_mb"))

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
            "after 40k and 50k steps of 60k (341 epochs of 176 steps; the total is our choice), "
            "batch 256"
        ),
        load=lambda data_dir=None: cifar("cifar100", data_dir),
        build_model=all_cnn_c,
        epochs=CIFAR100_EPOCHS,
        batch_size=256,
        # All-CNN-C has dropout: no per-example variance estimates.
        optimizers=WITHOUT_MINIBATCH,
        augment=augment_cifar,
        schedule="step",
        decay_at=tuple(step / (CIFAR100_STEPS_PER_EPOCH * CIFAR100_EPOCHS) for step in CIFAR100_DROPS),
        data="TFDS cifar100 (downloads, or prepared in --data-dir)",
    ),
    # Reduced stand-ins (minutes on two CPU cores, offline data).
    Task(
        name="mnist1d_mlp_dissecting",
        paper="dissecting_adam",
        stands_for="Dissecting Adam Fig. 3 (P1, stand-in for the MNIST MLP)",
        description=(
            "MNIST-1D (generated offline), MLP 40-1000-500-100-10 (P1's hidden layers) with L2 "
            "1e-4 on the weights, batch 128, constant step size, 20 epochs"
        ),
        load=data.mnist1d,
        build_model=lambda: mlp(40, (1000, 500, 100), l2=MNIST_L2),
        epochs=20,
        batch_size=128,
        optimizers=DISSECTING_OPTIMIZERS,
        scale="reduced",
    ),
    Task(
        name="digits_cnn_dissecting",
        paper="dissecting_adam",
        stands_for="Dissecting Adam Fig. 3 (P2, stand-in for the CIFAR-10 CNN)",
        description=(
            "scikit-learn digits 8×8 (offline), shifts and contrast; CNN 3 conv (32-48-64) + "
            "2 dense (128, 64) with L2 5e-4, batch 128, constant step size, 40 epochs"
        ),
        load=_digits_images,
        build_model=small_cnn_digits,
        epochs=40,
        batch_size=128,
        optimizers=DISSECTING_OPTIMIZERS,
        scale="reduced",
        augment=augment_digits,
        evaluation_batch_size=500,
    ),
    Task(
        name="digits_allcnn_dissecting",
        paper="dissecting_adam",
        stands_for="Dissecting Adam Fig. 3 (P3, stand-in for the CIFAR-100 All-CNN-C)",
        description=(
            "scikit-learn digits 8×8 (offline), shifts and contrast; a small All-CNN-C "
            "(7 conv, dropout) with L2 5e-4, batch 128, 60 epochs, step size ÷10 after 40 and 50 "
            "(P3's 40k and 50k of 60k steps, scaled)"
        ),
        load=_digits_images,
        build_model=small_all_cnn_digits,
        epochs=60,
        batch_size=128,
        optimizers=WITHOUT_MINIBATCH,
        scale="reduced",
        augment=augment_digits,
        schedule="step",
        decay_at=(40 / 60, 50 / 60),
        evaluation_batch_size=500,
    ),
]
