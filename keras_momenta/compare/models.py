"""Models of the reference tasks (the ResNets are in `resnet.py`)."""

import functools

import keras

# Dissecting Adam, Appendix A.1 gives no L2 factors: ours.
MNIST_L2 = 1e-4
CIFAR_L2 = 5e-4


def mlp(input_dim, hidden, classes=10, l2=None):
    """ReLU MLP with a softmax output; `l2` penalises every kernel (not the biases)."""
    dense = functools.partial(
        keras.layers.Dense, kernel_regularizer=keras.regularizers.L2(l2) if l2 else None
    )
    layers = [keras.Input((input_dim,))]
    layers += [dense(units, activation="relu") for units in hidden]
    layers += [dense(classes, activation="softmax")]
    return keras.Sequential(layers)


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
