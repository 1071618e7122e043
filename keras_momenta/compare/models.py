"""Models of the reference tasks (the ResNets are in `resnet.py`)."""

import functools

import keras

# Dissecting Adam, Appendix A.1 gives no L2 factors: ours.
MNIST_L2 = 1e-4
CIFAR_L2 = 5e-4


def l2_regularizer(l2):
    """Keras's L2 penalty `l2`·‖w‖², or none for a zero or missing factor."""
    return keras.regularizers.L2(l2) if l2 else None


def mlp(input_dim, hidden, classes=10, l2=None):
    """ReLU MLP with a softmax output; `l2` penalises every kernel (not the biases)."""
    dense = functools.partial(
        keras.layers.Dense, kernel_regularizer=l2_regularizer(l2)
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


# One-dimensional counterparts of the ImageNet networks, for MNIST-1D's 40
# samples (the papers' ImageNet experiments reduced; sizes are ours). Their
# `l2` is Keras's factor: PyTorch-style weight decay λ is L2(λ / 2).
def _conv1d(filters, size, strides=1, l2=0.0):
    return keras.layers.Conv1D(
        filters, size, strides=strides, padding="same", use_bias=False,
        kernel_regularizer=l2_regularizer(l2),
    )


# Batch-norm statistics (momentum 0.9) that settle within runs of a few hundred steps.
_batch_norm = functools.partial(keras.layers.BatchNormalization, momentum=0.9)


def _sequence_input(length):
    inputs = keras.Input((length,))
    return inputs, keras.layers.Reshape((length, 1))(inputs)


def _classifier(inputs, x, classes, l2, name):
    x = keras.layers.GlobalAveragePooling1D()(x)
    outputs = keras.layers.Dense(
        classes, activation="softmax", kernel_regularizer=l2_regularizer(l2)
    )(x)
    return keras.Model(inputs, outputs, name=name)


def resnet_1d(blocks=(1, 1, 1), filters=(16, 32, 64), length=40, classes=10, l2=5e-5):
    """He et al.'s ResNet (v1, basic blocks of two width-3 convolutions with
    batch norm, projection shortcuts where the shape changes, global average
    pooling) in one dimension: stages of `blocks` blocks of `filters`
    channels, each stage after the first halving the length."""
    inputs, x = _sequence_input(length)
    x = keras.layers.ReLU()(_batch_norm()(_conv1d(filters[0], 3, l2=l2)(x)))
    for stage, (count, width) in enumerate(zip(blocks, filters)):
        for block in range(count):
            strides = 2 if stage > 0 and block == 0 else 1
            y = _conv1d(width, 3, strides, l2)(x)
            y = keras.layers.ReLU()(_batch_norm()(y))
            y = _batch_norm()(_conv1d(width, 3, l2=l2)(y))
            if strides != 1 or x.shape[-1] != width:
                x = _batch_norm()(_conv1d(width, 1, strides, l2)(x))
            x = keras.layers.ReLU()(keras.layers.Add()([x, y]))
    return _classifier(inputs, x, classes, l2, f"resnet{2 + 2 * sum(blocks)}_1d")


# (expansion, channels, blocks, strides) of each stage; MobileNetV2's Table 2
# shortened: its first stages at its widths over a 40-sample input.
MOBILENET_1D_STAGES = ((1, 16, 1, 1), (6, 24, 2, 2), (6, 32, 3, 2), (6, 64, 2, 2))


def mobilenet_v2_1d(stages=MOBILENET_1D_STAGES, length=40, classes=10, l2=2e-5):
    """Sandler et al.'s MobileNetV2 in one dimension: a width-3 stem of 32
    channels, inverted residual blocks (1×1 expansion, width-3 depthwise
    convolution, linear 1×1 projection, each with batch norm, ReLU6 after the
    first two; a residual where the shape allows), a 1×1 convolution to 256
    channels and global average pooling."""
    relu6 = functools.partial(keras.layers.ReLU, max_value=6.0)
    inputs, x = _sequence_input(length)
    x = relu6()(_batch_norm()(_conv1d(32, 3, l2=l2)(x)))
    for expansion, channels, count, first_strides in stages:
        for block in range(count):
            strides = first_strides if block == 0 else 1
            y = x
            if expansion != 1:
                y = relu6()(_batch_norm()(_conv1d(expansion * x.shape[-1], 1, l2=l2)(y)))
            y = keras.layers.DepthwiseConv1D(
                3, strides=strides, padding="same", use_bias=False,
                depthwise_regularizer=l2_regularizer(l2),
            )(y)
            y = relu6()(_batch_norm()(y))
            y = _batch_norm()(_conv1d(channels, 1, l2=l2)(y))
            x = keras.layers.Add()([x, y]) if strides == 1 and x.shape[-1] == channels else y
    x = relu6()(_batch_norm()(_conv1d(256, 1, l2=l2)(x)))
    return _classifier(inputs, x, classes, l2, "mobilenet_v2_1d")
