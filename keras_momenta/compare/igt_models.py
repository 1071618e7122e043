"""Models of the IGT paper's experiments (Arnold et al. 2019, §6) and of their
reduced stand-ins.

- `resnet_v1_cifar`: the CIFAR ResNet of He et al. (2016, §4.2) as TF
  official models builds it (the paper's §6.1 "TF official models code and
  setup"): a 3×3 convolution of 16 filters, three stages of n basic blocks
  (16, 32, 64 filters, the last two starting with stride 2), global average
  pooling and a softmax layer; depth 6n + 2 weighted layers (ResNet-56:
  n = 9). As in TF official's v1 blocks, the first block of each stage has a
  1×1 projection shortcut with batch normalisation, batch normalisation has
  momentum 0.997 and ε = 1e-5, kernels start from a truncated-normal fan-in
  variance scaling, and weight decay 2e-4 (`tf.nn.l2_loss` style, i.e. a
  gradient of 2e-4·w) applies to every weight but batch normalisation's.
- `bilstm_sentiment`: an embedding, a bidirectional LSTM and a sigmoid
  output (§6.1, IMDb). The text we have of the paper does not give the sizes
  (its Appendix A is not in it): ours are those of Keras's
  `imdb_bidirectional_lstm` example (20k words, 100 tokens, embedding 128,
  LSTM 64 per direction, dropout 0.5).
- `miniimagenet_convnet`: the network of MAML on Mini-ImageNet (Finn et al.
  2017, §5.2, the setup §6.3 replicates): four blocks of 3×3 convolution
  with 32 filters, batch normalisation, ReLU and 2×2 max-pooling, then a
  softmax layer over the N ways.
"""

import keras

from keras_momenta.compare.models import l2_regularizer

RESNET_WEIGHT_DECAY = 2e-4  # TF official models' CIFAR-10 setting
BN_MOMENTUM = 0.997  # TF official models'


def _kernel_initializer():
    return keras.initializers.VarianceScaling(1.0, "fan_in", "truncated_normal")


def _conv(filters, size, strides, l2):
    return keras.layers.Conv2D(
        filters, size, strides=strides, padding="same", use_bias=False,
        kernel_initializer=_kernel_initializer(),
        kernel_regularizer=l2_regularizer(l2),
    )


def _v1_block(x, filters, strides, projection, l2, bn):
    shortcut = x
    if projection:
        shortcut = bn()(_conv(filters, 1, strides, l2)(x))
    y = _conv(filters, 3, strides, l2)(x)
    y = keras.layers.ReLU()(bn()(y))
    y = bn()(_conv(filters, 3, 1, l2)(y))
    return keras.layers.ReLU()(keras.layers.Add()([shortcut, y]))


def resnet_v1_cifar(depth=56, filters=(16, 32, 64), input_shape=(32, 32, 3), classes=10,
                    weight_decay=RESNET_WEIGHT_DECAY, bn_momentum=BN_MOMENTUM):
    """CIFAR ResNet v1 of `depth` = 6n + 2 weighted layers (see the module's
    docstring); `weight_decay` is the factor of ½‖w‖² in the loss."""
    if (depth - 2) % 6:
        raise ValueError(f"A CIFAR ResNet has depth 6n + 2; got {depth}.")
    blocks = (depth - 2) // 6
    l2 = weight_decay / 2  # Keras's L2(λ) adds λ‖w‖²

    def bn():
        return keras.layers.BatchNormalization(momentum=bn_momentum, epsilon=1e-5)

    inputs = keras.Input(input_shape)
    x = _conv(filters[0], 3, 1, l2)(inputs)
    x = keras.layers.ReLU()(bn()(x))
    for stage, width in enumerate(filters):
        for block in range(blocks):
            first = block == 0
            x = _v1_block(x, width, 2 if first and stage else 1, projection=first, l2=l2, bn=bn)
    x = keras.layers.GlobalAveragePooling2D()(x)
    regularizer = l2_regularizer(l2)
    outputs = keras.layers.Dense(
        classes, activation="softmax", kernel_regularizer=regularizer, bias_regularizer=regularizer,
    )(x)
    return keras.Model(inputs, outputs, name=f"resnet{depth}_v1")


def weighted_layer_count(model):
    """Layers a ResNet's depth counts: 3×3 convolutions and dense layers (not
    the 1×1 projection shortcuts)."""
    dense = [layer for layer in model.layers if isinstance(layer, keras.layers.Dense)]
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    return len(dense) + sum(conv.kernel_size != (1, 1) for conv in convs)


# §6.1 IMDb: sizes of Keras's example (our choice, see the module's docstring).
IMDB_VOCABULARY = 20_000
IMDB_LENGTH = 100


def bilstm_sentiment(vocabulary=IMDB_VOCABULARY, length=IMDB_LENGTH, embedding=128, units=64,
                     dropout=0.5):
    inputs = keras.Input((length,), dtype="int64")
    x = keras.layers.Embedding(vocabulary, embedding)(inputs)
    x = keras.layers.Bidirectional(keras.layers.LSTM(units))(x)
    if dropout:
        x = keras.layers.Dropout(dropout)(x)
    outputs = keras.layers.Dense(1, activation="sigmoid")(x)
    return keras.Model(inputs, outputs, name="bilstm_sentiment")


MINIIMAGENET_SIZE = 84


def miniimagenet_convnet(ways=5, filters=32, size=MINIIMAGENET_SIZE):
    layers = [keras.Input((size, size, 3))]
    for _ in range(4):
        layers += [
            keras.layers.Conv2D(filters, 3, padding="same"),
            keras.layers.BatchNormalization(),
            keras.layers.ReLU(),
            keras.layers.MaxPooling2D(2),
        ]
    layers += [keras.layers.Flatten(), keras.layers.Dense(ways, activation="softmax")]
    return keras.Sequential(layers, name="miniimagenet_convnet")
