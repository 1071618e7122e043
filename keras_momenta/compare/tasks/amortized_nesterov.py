"""AM-SGD (Zhou et al. 2020): its experiments as runner tasks."""

from keras_momenta.compare import resnet
from keras_momenta.compare.tasks import Task

AMORTIZED_OPTIMIZERS = ("sgd", "nesterov_sgd", "om_sgd", "am1_sgd_i", "am1_sgd_ii", "am2_sgd")

TASKS = [
    Task(
        name="cifar10_resnet34",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6, Fig. 3 and Table 1 (CIFAR-10 ResNet-34)",
        description=(
            "CIFAR-10 through TFDS, crops and flips; ResNet-34 with weight decay 5e-4 as L2; "
            "batch 128, 90 epochs, step size ÷10 after a third and two thirds of the run "
            "(epochs 30 and 60; our reading)"
        ),
        load=resnet.cifar10,
        build_model=resnet.resnet34_cifar,
        epochs=90,
        batch_size=128,
        optimizers=AMORTIZED_OPTIMIZERS,
        augment=resnet.crop_and_flip,
        schedule="step",
        decay_at=(1 / 3, 2 / 3),
        data="TFDS cifar10 (downloads, or prepared in --data-dir)",
    ),
]
