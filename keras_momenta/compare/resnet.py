"""ResNet-34 on CIFAR-10, the setting of the AM-SGD paper's Section 6.

The paper (Zhou et al. 2020) trains ResNet-34 (He et al. 2016) on CIFAR-10
for 90 epochs "following Ma and Yarats (2019)"; the text we have does not
give the rest. Our reading, the usual CIFAR recipe: the CIFAR variant of
ResNet-34 (3×3 stem, no max-pooling, basic blocks [3, 4, 6, 3] of 64-512
channels), batch 128, weight decay 5e-4 as an L2 penalty on the kernels (PyTorch
style: Keras's L2(2.5e-4) has the gradient 5e-4·w), random 32×32 crops of
the image padded by 4 and left-right flips, per-channel normalisation.
"""

import functools

import keras
import tensorflow as tf

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)
WEIGHT_DECAY = 5e-4


def _conv(filters, size, strides=1, l2=WEIGHT_DECAY / 2):
    return keras.layers.Conv2D(
        filters, size, strides=strides, padding="same", use_bias=False,
        kernel_regularizer=keras.regularizers.L2(l2),
    )


# PyTorch's BatchNorm defaults (momentum 0.1 of the new batch, ε = 1e-5).
_batch_norm = functools.partial(keras.layers.BatchNormalization, momentum=0.9, epsilon=1e-5)


def _basic_block(x, filters, strides):
    y = keras.layers.ReLU()(_batch_norm()(_conv(filters, 3, strides)(x)))
    y = _batch_norm()(_conv(filters, 3)(y))
    if strides != 1 or x.shape[-1] != filters:
        x = _batch_norm()(_conv(filters, 1, strides)(x))
    return keras.layers.ReLU()(keras.layers.Add()([x, y]))


def resnet34_cifar(classes=10):
    inputs = keras.Input((32, 32, 3))
    x = keras.layers.ReLU()(_batch_norm()(_conv(64, 3)(inputs)))
    for filters, blocks, strides in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            x = _basic_block(x, filters, strides if block == 0 else 1)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        classes, activation="softmax",
        kernel_regularizer=keras.regularizers.L2(WEIGHT_DECAY / 2),
    )(x)
    return keras.Model(inputs, outputs, name="resnet34_cifar")


def _normalise(image):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - CIFAR10_MEAN) / CIFAR10_STD


def cifar10(data_dir=None):
    """CIFAR-10 from TFDS, normalised per channel (training images are
    cropped and flipped afterwards by `crop_and_flip`)."""
    from keras_momenta.compare import data

    return data.tfds_splits("cifar10", data_dir).map(lambda image, label: (_normalise(image), label))


def crop_and_flip(image, label, seed):
    """A random 32×32 crop of the image padded by 4, and a random left-right
    flip, drawn with stateless ops from `seed`."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    padded = tf.image.resize_with_crop_or_pad(image, 40, 40)
    image = tf.image.stateless_random_crop(padded, [32, 32, 3], seed=crop_seed)
    return tf.image.stateless_random_flip_left_right(image, seed=flip_seed), label
