"""Reference tasks of the comparison runner.

A task provides batched `tf.data` pipelines for a seed, a model builder and
its training settings. `mnist1d_mlp` (the default) needs no download: the
`mnist1d` package generates MNIST-1D offline. `mnist_mlp` reads MNIST through
TensorFlow Datasets (`tfds.load`), which downloads it unless it is already in
`data_dir` (or TFDS's default data directory); so do the Dissecting Adam
tasks `mnist_mlp_dissecting`, `cifar10_cnn` and `cifar100_allcnn`.
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
    # Training-set size, for schedules that need the total number of steps.
    train_examples: int = 0
    # Steps after which the step size is divided by 10 (entries that follow
    # the task's schedule build it with `optimizers.task_step_size`).
    step_decay: tuple = ()

    @property
    def total_steps(self):
        if not self.train_examples:
            raise ValueError(f"Task {self.name!r} does not state `train_examples`.")
        return self.epochs * -(-self.train_examples // self.batch_size)


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


def mlp(input_dim, hidden, classes=10, l2=None):
    """ReLU MLP with a softmax output; `l2` penalises every kernel (not the biases)."""
    dense = functools.partial(
        keras.layers.Dense, kernel_regularizer=keras.regularizers.L2(l2) if l2 else None
    )
    layers = [keras.Input((input_dim,))]
    layers += [dense(units, activation="relu") for units in hidden]
    layers += [dense(classes, activation="softmax")]
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
        train_examples=4000,
    ),
    "mnist_mlp": Task(
        name="mnist_mlp",
        description="MNIST through TFDS, MLP 784-1000-1000-10 (Expectigrad §4.2), batch 128",
        datasets=lambda seed: mnist_datasets(seed, batch_size=128),
        build_model=lambda: mlp(784, (1000, 1000)),
        epochs=20,
        batch_size=128,
        default_optimizers=FOUNDATION_OPTIMIZERS,
        train_examples=60_000,
    ),
}


# ------------------------------------------- Dissecting Adam, Appendix A.1
#
# The paper gives the architectures, batch sizes and schedules but not the
# L2 factors, the number of steps on MNIST and CIFAR-10, or the exact
# augmentation: those below are our choices (marked).

DISSECTING_OPTIMIZERS = ("m_sgd", "m_ssd", "m_svag", "adam")
MNIST_L2 = 1e-4  # our choice
CIFAR_L2 = 5e-4  # our choice


def cifar_datasets(name, seed, batch_size, data_dir=None):
    """CIFAR-10 or CIFAR-100 from TFDS, standardised per image.

    Training images are augmented as in the paper (random crops, left-right
    mirroring, colour distortion); the crop is taken from the image padded by
    4 pixels, and the distortion strengths are our choice.
    """
    import tensorflow_datasets as tfds

    train, test = tfds.load(name, split=["train", "test"], as_supervised=True, data_dir=data_dir)

    def standardise(image, label):
        return tf.image.per_image_standardization(image), label

    def augment(image, label):
        image = tf.image.convert_image_dtype(image, tf.float32)
        image = tf.image.resize_with_crop_or_pad(image, 40, 40)
        image = tf.image.random_crop(image, [32, 32, 3])
        image = tf.image.random_flip_left_right(image)
        image = tf.image.random_brightness(image, max_delta=0.25)
        image = tf.image.random_saturation(image, 0.5, 1.5)
        image = tf.image.random_contrast(image, 0.5, 1.5)
        return standardise(image, label)

    train = (
        train.shuffle(10_000, seed=seed)
        .map(augment, num_parallel_calls=tf.data.AUTOTUNE)
        .batch(batch_size)
        .prefetch(tf.data.AUTOTUNE)
    )
    test = test.map(standardise, num_parallel_calls=tf.data.AUTOTUNE).batch(1000)
    return train, test.prefetch(tf.data.AUTOTUNE)


def cifar10_cnn(l2=CIFAR_L2):
    """Three convolutions (64 5×5, 96 3×3, 128 3×3), each followed by 3×3
    max-pooling with stride 2, then dense 512 and 256, softmax 10; ReLU."""
    regularizer = keras.regularizers.L2(l2)
    conv = functools.partial(
        keras.layers.Conv2D, padding="same", activation="relu", kernel_regularizer=regularizer
    )
    pool = functools.partial(keras.layers.MaxPooling2D, 3, strides=2, padding="same")
    dense = functools.partial(keras.layers.Dense, kernel_regularizer=regularizer)
    return keras.Sequential([
        keras.Input((32, 32, 3)),
        conv(64, 5), pool(), conv(96, 3), pool(), conv(128, 3), pool(),
        keras.layers.Flatten(),
        dense(512, activation="relu"), dense(256, activation="relu"),
        dense(10, activation="softmax"),
    ])


def all_cnn_c(classes=100, l2=CIFAR_L2):
    """All-CNN-C of Springenberg et al. (2015), with its dropout (20% on the
    input, 50% after each stride-2 convolution): nine convolutions, the last
    two 1×1, and global average pooling instead of dense layers; ReLU."""
    def conv(filters, size, strides=1, padding="same", activation="relu"):
        return keras.layers.Conv2D(
            filters, size, strides=strides, padding=padding, activation=activation,
            kernel_regularizer=keras.regularizers.L2(l2),
        )

    return keras.Sequential([
        keras.Input((32, 32, 3)),
        keras.layers.Dropout(0.2),
        conv(96, 3), conv(96, 3), conv(96, 3, strides=2),
        keras.layers.Dropout(0.5),
        conv(192, 3), conv(192, 3), conv(192, 3, strides=2),
        keras.layers.Dropout(0.5),
        conv(192, 3, padding="valid"), conv(192, 1), conv(classes, 1, activation=None),
        keras.layers.GlobalAveragePooling2D(),
        keras.layers.Activation("softmax"),
    ])


TASKS.update({
    "mnist_mlp_dissecting": Task(
        name="mnist_mlp_dissecting",
        description=(
            "MNIST through TFDS, MLP 784-1000-500-100-10 with L2 1e-4 on the weights "
            "(Dissecting Adam §A.1), batch 128"
        ),
        datasets=lambda seed: mnist_datasets(seed, batch_size=128),
        build_model=lambda: mlp(784, (1000, 500, 100), l2=MNIST_L2),
        epochs=20,  # our choice
        batch_size=128,
        default_optimizers=DISSECTING_OPTIMIZERS,
        train_examples=60_000,
    ),
    "cifar10_cnn": Task(
        name="cifar10_cnn",
        description=(
            "CIFAR-10 through TFDS, augmented; CNN 3 conv + 2 dense with L2 5e-4 "
            "(Dissecting Adam §A.1), batch 256"
        ),
        datasets=lambda seed: cifar_datasets("cifar10", seed, batch_size=256),
        build_model=cifar10_cnn,
        epochs=100,  # our choice
        batch_size=256,
        default_optimizers=DISSECTING_OPTIMIZERS,
        train_examples=50_000,
    ),
    "cifar100_allcnn": Task(
        name="cifar100_allcnn",
        description=(
            "CIFAR-100 through TFDS, augmented; All-CNN-C with L2 5e-4, step size "
            "÷10 after 40k and 50k steps (Dissecting Adam §A.1), batch 256"
        ),
        datasets=lambda seed: cifar_datasets("cifar100", seed, batch_size=256),
        build_model=all_cnn_c,
        epochs=300,  # 58,800 steps
        batch_size=256,
        default_optimizers=DISSECTING_OPTIMIZERS,
        train_examples=50_000,
        step_decay=(40_000, 50_000),
    ),
})


# ------------------------------------------ AM-SGD (Zhou et al.), Section 6

AMORTIZED_OPTIMIZERS = ("sgd", "nesterov_sgd", "om_sgd", "am1_sgd_i", "am1_sgd_ii", "am2_sgd")
_CIFAR10_STEPS_PER_EPOCH = -(-50_000 // 128)


def _cifar10_resnet34_datasets(seed):
    from keras_momenta.compare.resnet import cifar10_datasets

    return cifar10_datasets(seed, batch_size=128)


def _resnet34():
    from keras_momenta.compare.resnet import resnet34_cifar

    return resnet34_cifar()


TASKS["cifar10_resnet34"] = Task(
    name="cifar10_resnet34",
    description=(
        "CIFAR-10 through TFDS, crops and flips; ResNet-34 with weight decay 5e-4 as L2; "
        "batch 128, 90 epochs, step size ÷10 after epochs 30 and 60 (AM-SGD §6, our reading)"
    ),
    datasets=_cifar10_resnet34_datasets,
    build_model=_resnet34,
    epochs=90,
    batch_size=128,
    default_optimizers=AMORTIZED_OPTIMIZERS,
    train_examples=50_000,
    step_decay=(30 * _CIFAR10_STEPS_PER_EPOCH, 60 * _CIFAR10_STEPS_PER_EPOCH),
)
