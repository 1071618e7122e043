"""Image models and ImageNet data of the reference tasks.

CIFAR-10 models of the Expectigrad paper (Daley & Amato 2020, Section 6): a
VGG-16 with 33.6M parameters and a ResNet-50 with 23.5M. Those counts fix
the variants: VGG-16's 13 convolutions with the original three-layer
classifier (4096, 4096, 10) on the 1×1×512 map of a 32×32 image, and the
CIFAR ResNet-50 (3×3 stem, no max-pooling, bottleneck stages [3, 4, 6, 3]).
Batch normalisation after each of VGG's convolutions and its classifier's
dropout 0.5 are our choices (the paper's Appendix A is not in our copy).

ImageNet (ILSVRC 2012) for the Expectigrad, IGT and AM-SGD tasks: TFDS
`imagenet2012`, built from the user's archives (manual download), the
standard Inception-style preprocessing (random-resized crops of 8-100% of
the area and aspect ratio 3/4-4/3, left-right flips, for training; the
central 224×224 of the image resized to a shorter side of 256 for
evaluation), per-channel normalisation, and `keras.applications` models
without pretrained weights.
"""

import functools

import keras
import tensorflow as tf

from keras_momenta.compare import data

# --- CIFAR-10 models (Expectigrad §6) ---------------------------------------

VGG16_BLOCKS = ((64, 2), (128, 2), (256, 3), (512, 3), (512, 3))


def vgg16_cifar(classes=10, batch_norm=True, dropout=0.5):
    """VGG-16 (configuration D of Simonyan & Zisserman 2014) for 32×32
    images: 13 3×3 convolutions in five blocks, each block followed by 2×2
    max-pooling, then dense 4096, 4096 and `classes` (33.6M parameters)."""
    layers = [keras.Input((32, 32, 3))]
    for filters, convolutions in VGG16_BLOCKS:
        for _ in range(convolutions):
            layers.append(keras.layers.Conv2D(filters, 3, padding="same", use_bias=not batch_norm))
            if batch_norm:
                layers.append(keras.layers.BatchNormalization())
            layers.append(keras.layers.ReLU())
        layers.append(keras.layers.MaxPooling2D(2))
    layers.append(keras.layers.Flatten())
    for _ in range(2):
        layers += [keras.layers.Dense(4096, activation="relu"), keras.layers.Dropout(dropout)]
    layers.append(keras.layers.Dense(classes, activation="softmax"))
    return keras.Sequential(layers, name="vgg16_cifar")


def _conv_bn(x, filters, size, strides=1, relu=True):
    x = keras.layers.Conv2D(filters, size, strides=strides, padding="same", use_bias=False)(x)
    x = keras.layers.BatchNormalization()(x)
    return keras.layers.ReLU()(x) if relu else x


def _bottleneck(x, filters, strides):
    y = _conv_bn(x, filters, 1)
    y = _conv_bn(y, filters, 3, strides)
    y = _conv_bn(y, 4 * filters, 1, relu=False)
    if strides != 1 or x.shape[-1] != 4 * filters:
        x = _conv_bn(x, 4 * filters, 1, strides, relu=False)
    return keras.layers.ReLU()(keras.layers.Add()([x, y]))


def resnet50_cifar(classes=10):
    """ResNet-50 (He et al. 2016) for 32×32 images: a 3×3 stem of 64
    channels without max-pooling, bottleneck stages [3, 4, 6, 3] of
    64-512 (×4) channels, global average pooling, softmax (23.5M parameters)."""
    inputs = keras.Input((32, 32, 3))
    x = _conv_bn(inputs, 64, 3)
    for filters, blocks, strides in ((64, 3, 1), (128, 4, 2), (256, 6, 2), (512, 3, 2)):
        for block in range(blocks):
            x = _bottleneck(x, filters, strides if block == 0 else 1)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(classes, activation="softmax")(x)
    return keras.Model(inputs, outputs, name="resnet50_cifar")


def small_vgg(input_shape=(8, 8, 1), classes=10):
    """A VGG-style CNN for 8×8 images (our stand-in for VGG-16 on small
    data): two blocks of two 3×3 convolutions (32 and 64 channels) with batch
    normalisation and 2×2 max-pooling, dense 256 with dropout 0.5, softmax."""
    layers = [keras.Input(input_shape)]
    for filters in (32, 64):
        for _ in range(2):
            layers += [
                keras.layers.Conv2D(filters, 3, padding="same", use_bias=False),
                keras.layers.BatchNormalization(),
                keras.layers.ReLU(),
            ]
        layers.append(keras.layers.MaxPooling2D(2))
    layers += [
        keras.layers.Flatten(),
        keras.layers.Dense(256, activation="relu"),
        keras.layers.Dropout(0.5),
        keras.layers.Dense(classes, activation="softmax"),
    ]
    return keras.Sequential(layers, name="small_vgg")


# --- ImageNet ------------------------------------------------------------------

IMAGE_SIZE = 224
RESIZE = 256
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
# The held-out part of the training set used as validation data (our choice,
# about 1% of it); the test set is TFDS's "validation" split (50,000 images).
HELD_OUT = "train[-1%:]"
TRAIN = "train[:-1%]"


def _normalise(image):
    image = tf.cast(image, tf.float32) / 255.0
    return (image - IMAGENET_MEAN) / IMAGENET_STD


def center_crop(image, label):
    """Evaluation: the image resized to a shorter side of 256, its central
    224×224, normalised per channel."""
    shape = tf.cast(tf.shape(image)[:2], tf.float32)
    scale = RESIZE / tf.reduce_min(shape)
    size = tf.cast(tf.round(shape * scale), tf.int32)
    image = tf.image.resize(image, size, method="bilinear", antialias=True)
    image = tf.image.resize_with_crop_or_pad(image, IMAGE_SIZE, IMAGE_SIZE)
    return _normalise(image), label


def random_resized_crop(image, label, seed):
    """Training: a random crop of 8-100% of the image's area with aspect
    ratio 3/4-4/3, resized to 224×224, and a random left-right flip, drawn
    with stateless ops from `seed`; normalised per channel."""
    box_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    begin, size, _ = tf.image.stateless_sample_distorted_bounding_box(
        tf.shape(image),
        bounding_boxes=tf.constant([[[0.0, 0.0, 1.0, 1.0]]]),
        seed=box_seed,
        min_object_covered=0.0,
        aspect_ratio_range=(3 / 4, 4 / 3),
        area_range=(0.08, 1.0),
        max_attempts=10,
        use_image_if_no_bounding_boxes=True,
    )
    image = tf.slice(image, begin, size)
    image = tf.image.resize(image, (IMAGE_SIZE, IMAGE_SIZE), method="bilinear", antialias=True)
    image = tf.image.stateless_random_flip_left_right(image, seed=flip_seed)
    return _normalise(image), label


def imagenet(data_dir=None):
    """ILSVRC 2012 from TFDS `imagenet2012` (built from the archives in
    `<data_dir>/downloads/manual`): training examples raw (the task's
    augmentation crops them), validation (the last 1% of the training set)
    and test (TFDS's validation split) center-cropped."""
    splits = data.tfds_splits(
        "imagenet2012", data_dir, train=TRAIN, validation=HELD_OUT, test="validation", manual=True
    )
    return splits.map_evaluation(center_crop)


def with_weight_decay(model, l2):
    """`model` with an L2 penalty `l2`·‖w‖² on every kernel (weights of
    convolutions, depthwise convolutions and dense layers; not the biases or
    batch normalisation)."""
    for variable in model.trainable_variables:
        if variable.path.endswith("kernel"):
            variable.regularizer = keras.regularizers.L2(l2)
    return model


def _application(constructor, l2):
    model = constructor(weights=None, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3), classes=1000)
    return with_weight_decay(model, l2) if l2 else model


# PyTorch-style weight decay λ (gradient λ·w) is Keras's L2(λ / 2).
def resnet50(weight_decay=1e-4):
    """ResNet-50 of `keras.applications` (25.6M parameters), untrained."""
    return _application(keras.applications.ResNet50, weight_decay / 2)


def resnet152(weight_decay=1e-4):
    """ResNet-152 of `keras.applications` (60.4M parameters), untrained."""
    return _application(keras.applications.ResNet152, weight_decay / 2)


def mobilenet_v2(weight_decay=4e-5):
    """MobileNetV2 (width 1.0, 224×224) of `keras.applications` (3.5M
    parameters), untrained; weight decay 4e-5 as in Sandler et al. (2018)."""
    return _application(functools.partial(keras.applications.MobileNetV2, alpha=1.0), weight_decay / 2)
