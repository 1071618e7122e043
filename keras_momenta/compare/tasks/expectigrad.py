"""Expectigrad (Daley & Amato 2020): its image experiments as runner tasks.

- §4.2, Fig. 2 (right): MNIST, an MLP with two hidden layers of 1000 ReLU
  units ("following Kingma & Ba", whose batch is 128), 150 epochs, against
  RMSprop, Adadelta and Adam at TensorFlow's default hyperparameters;
  Expectigrad at Adam's (α = 1e-3, β = 0.9, ε = 1e-8).
- §6, Fig. 3: CIFAR-10, VGG-16 (33.6M parameters) and ResNet-50 (23.5M), 250
  epochs, against AdaGrad, Adam, AMSGrad and Yogi after "a small grid search"
  of α and ε. Batch size, augmentation and schedule are in the paper's
  Appendix A, which our copy lacks: batch 128, crops and flips, a constant
  step size (the paper stresses Expectigrad needs no annealing) are our choices.
- The ImageNet MobileNetV2 task (§6, Fig. 4) is in `tasks/imagenet.py`.

Reduced stand-ins (minutes on a CPU): the MNIST MLP on MNIST-1D, and a small
VGG-style CNN on scikit-learn's 8×8 digits for Fig. 3.
"""

import tensorflow as tf

from keras_momenta.compare import data, resnet, vision
from keras_momenta.compare.models import mlp
from keras_momenta.compare.optimizers import OPTIMIZERS
from keras_momenta.compare.tasks import Task

# §4.2: the EMA-based baselines at TensorFlow's defaults.
MNIST_OPTIMIZERS = ("expectigrad", "adam", "rmsprop", "adadelta")
# §6, Fig. 3: AdaGrad, Adam, AMSGrad, Yogi. Yogi is listed only once the
# runner has an entry for it.
CIFAR_OPTIMIZERS = tuple(
    name for name in ("expectigrad", "adagrad", "adam", "amsgrad", "yogi") if name in OPTIMIZERS
)

CIFAR_EPOCHS = 250
CIFAR_BATCH = 128  # our choice (Appendix A is not in our copy)


def flat_images(image, label):
    return tf.reshape(tf.cast(image, tf.float32) / 255.0, [-1]), label


def mnist(data_dir=None):
    """MNIST from TFDS, flattened to 784 features in [0, 1]; the last 10% of
    the training set is the validation set."""
    return data.tfds_splits("mnist", data_dir).map(flat_images)


def digits_images(data_dir=None):
    """scikit-learn's 8×8 digits as 8×8×1 images in [0, 1]."""
    return data.digits(data_dir, image=True)


TASKS = [
    Task(
        name="mnist_mlp",
        paper="expectigrad",
        stands_for="Expectigrad §4.2, Fig. 2 (right): MNIST MLP, 150 epochs",
        description=(
            "MNIST through TFDS, MLP 784-1000-1000-10 (ReLU, no regularisation), batch 128 "
            "(Kingma & Ba's), 150 epochs, constant step size at each method's default"
        ),
        load=mnist,
        build_model=lambda: mlp(784, (1000, 1000)),
        epochs=150,
        batch_size=128,
        optimizers=MNIST_OPTIMIZERS,
        # Fig. 2 (right) plots the training loss.
        selection="val_loss",
        data="TFDS mnist (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="cifar10_vgg16",
        paper="expectigrad",
        stands_for="Expectigrad §6, Fig. 3 (left): CIFAR-10 VGG-16",
        description=(
            "CIFAR-10 through TFDS, crops of the image padded by 4 and flips, per-channel "
            "normalisation; VGG-16 (13 conv with batch norm, dense 4096-4096-10 with dropout "
            "0.5; 33.6M parameters); batch 128, 250 epochs, constant step size "
            "(batch, augmentation, batch norm, dropout and schedule: our choices)"
        ),
        load=resnet.cifar10,
        build_model=vision.vgg16_cifar,
        epochs=CIFAR_EPOCHS,
        batch_size=CIFAR_BATCH,
        optimizers=CIFAR_OPTIMIZERS,
        augment=resnet.crop_and_flip,
        data="TFDS cifar10 (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="cifar10_resnet50",
        paper="expectigrad",
        stands_for="Expectigrad §6, Fig. 3 (right): CIFAR-10 ResNet-50",
        description=(
            "CIFAR-10 through TFDS, crops of the image padded by 4 and flips, per-channel "
            "normalisation; CIFAR ResNet-50 (3×3 stem, bottleneck stages [3, 4, 6, 3]; 23.5M "
            "parameters); batch 128, 250 epochs, constant step size "
            "(batch, augmentation and schedule: our choices)"
        ),
        load=resnet.cifar10,
        build_model=vision.resnet50_cifar,
        epochs=CIFAR_EPOCHS,
        batch_size=CIFAR_BATCH,
        optimizers=CIFAR_OPTIMIZERS,
        augment=resnet.crop_and_flip,
        data="TFDS cifar10 (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="mnist1d_mlp_2x1000",
        paper="expectigrad",
        stands_for="Expectigrad §4.2, Fig. 2 (right), reduced: MNIST-1D for MNIST",
        description=(
            "MNIST-1D (generated offline), the paper's MLP 40-1000-1000-10, batch 128, "
            "150 epochs as in the paper (minutes per run on a CPU), constant step size "
            "at each method's default: is Expectigrad's training loss orders of magnitude "
            "below Adam's, RMSprop's and Adadelta's?"
        ),
        load=data.mnist1d,
        build_model=lambda: mlp(40, (1000, 1000)),
        epochs=150,
        batch_size=128,
        optimizers=MNIST_OPTIMIZERS,
        scale="reduced",
        selection="val_loss",
    ),
    Task(
        name="digits_vgg",
        paper="expectigrad",
        stands_for="Expectigrad §6, Fig. 3, reduced: a small VGG-style CNN on 8×8 digits for CIFAR-10",
        description=(
            "scikit-learn's 8×8 digits (1437 train / 360 test), VGG-style CNN "
            "(2×[conv 32], pool, 2×[conv 64], pool, dense 256, dropout 0.5; our choice), "
            "batch 128, 100 epochs, constant step size"
        ),
        load=digits_images,
        build_model=vision.small_vgg,
        epochs=100,
        batch_size=128,
        optimizers=CIFAR_OPTIMIZERS,
        scale="reduced",
    ),
]
