"""The papers' ImageNet (ILSVRC 2012) experiments as runner tasks.

Data (`vision.imagenet`): TFDS `imagenet2012` built from the user's archives
(ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar in
`<data_dir>/downloads/manual`); random-resized crops and flips for training,
center crops for evaluation; validation data are the last 1% of the training
set, test data TFDS's validation split. Models are `keras.applications`'
without pretrained weights. Weight decay is an L2 penalty on the kernels.

- Expectigrad (Daley & Amato 2020, §6, Fig. 4): MobileNetV2, 300 epochs,
  Expectigrad against Yogi. Batch 256, a constant step size (the paper
  anneals nothing it mentions) and weight decay 4e-5 (Sandler et al.'s) are
  our choices.
- IGT (Arnold et al. 2019, §6.1, Fig. 4): ResNet-50, "the setup of CIFAR10
  with minibatches of 1024": TF official models' ResNet, a linearly
  decreasing step size, SGD, HB (0.9), Adam against ITA, HB-ITA (and
  Adam-ITA, §6.1's IMDb). 90 epochs and weight decay 1e-4 (TF official
  models' ResNet-50 recipe) are our reading; the appendix is not in our copy.
- AM-SGD (Zhou et al. 2020, §6.2, Fig. 4 and Table 2): ResNet-50 and
  ResNet-152, initial step size 0.1 and momentum 0.9 for every method, SGD,
  M-SGD (Nesterov), AM1-SGD and AM2-SGD, both option II ("Here we choose to
  evaluate Option II"). 90 epochs, batch 256, ÷10 at epochs 30 and 60 and
  weight decay 1e-4 (the standard ResNet ImageNet recipe) are our reading.
  The paper restarts AM1/AM2-SGD after each step-size drop: the tasks run
  `keras_momenta.callbacks.RestartOnLearningRateDrop()` (which leaves the
  other optimizers alone).

Reduced stand-ins (minutes on two CPU cores): MNIST-1D at ten times its
default size (40,000 training sequences, generated offline) for ImageNet's
size, and one-dimensional MobileNetV2 and ResNets (`models.py`) for its
networks; each keeps what its paper varies: Expectigrad against Yogi at the
paper's step sizes; batch 1024 and a linear decay for IGT; η = 0.1, β = 0.9,
step drops and restarts for AM-SGD.
"""

from keras_momenta.callbacks import RestartOnLearningRateDrop
from keras_momenta.compare import data, models, vision
from keras_momenta.compare.optimizers import OPTIMIZERS
from keras_momenta.compare.tasks import Task

DATA = (
    "TFDS imagenet2012, built from ILSVRC2012_img_train.tar and ILSVRC2012_img_val.tar that "
    "you place in <data-dir>/downloads/manual (TFDS's manual_dir; registration at image-net.org)"
)
PREPROCESSING = (
    "random-resized crops (8-100% of the area, aspect 3/4-4/3) to 224×224 and flips for "
    "training; shorter side 256 and central 224×224 for evaluation"
)
# Yogi is listed only once the runner has an entry for it.
EXPECTIGRAD_OPTIMIZERS = tuple(name for name in ("expectigrad", "yogi") if name in OPTIMIZERS)
IGT_OPTIMIZERS = ("sgd", "sgd_momentum", "adam", "ita", "hb_ita", "adam_ita")
AMORTIZED_OPTIMIZERS = ("sgd", "nesterov_sgd", "am1_sgd_ii", "am2_sgd")

# Shared by every ImageNet task (our choices): a shuffle buffer of decoded
# images that fits in memory, and evaluation batches of 250 images.
COMMON = dict(
    paper="",
    load=vision.imagenet,
    augment=vision.random_resized_crop,
    shuffle_buffer=10_000,
    evaluation_batch_size=250,
    data=DATA,
)


def restart_after_drops(model):
    del model
    return [RestartOnLearningRateDrop()]


def _task(**fields):
    return Task(**{**COMMON, **fields})


TASKS = [
    _task(
        name="imagenet_mobilenetv2",
        paper="expectigrad",
        stands_for="Expectigrad §6, Fig. 4: ImageNet MobileNetV2, 300 epochs",
        description=(
            f"ImageNet, {PREPROCESSING}; MobileNetV2 (3.5M parameters) with weight decay 4e-5; "
            "batch 256, 300 epochs, constant step size (batch, weight decay, schedule: our choices)"
        ),
        build_model=vision.mobilenet_v2,
        epochs=300,
        batch_size=256,
        optimizers=EXPECTIGRAD_OPTIMIZERS,
    ),
    _task(
        name="imagenet_resnet50_igt",
        paper="igt",
        stands_for="IGT §6.1, Fig. 4: ImageNet ResNet-50, batch 1024",
        description=(
            f"ImageNet, {PREPROCESSING}; ResNet-50 (25.6M parameters) with weight decay 1e-4; "
            "batch 1024, 90 epochs, step size decreasing linearly to 0 "
            "(epochs and weight decay: our reading of TF official models' setup)"
        ),
        build_model=vision.resnet50,
        epochs=90,
        batch_size=1024,
        optimizers=IGT_OPTIMIZERS,
        schedule="linear",
    ),
    _task(
        name="imagenet_resnet50_amsgd",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.2, Fig. 4 and Table 2: ImageNet ResNet-50",
        description=(
            f"ImageNet, {PREPROCESSING}; ResNet-50 (25.6M parameters) with weight decay 1e-4; "
            "batch 256, 90 epochs, step size 0.1 ÷10 at epochs 30 and 60 "
            "(epochs, batch, schedule, weight decay: our reading)"
        ),
        build_model=vision.resnet50,
        epochs=90,
        batch_size=256,
        optimizers=AMORTIZED_OPTIMIZERS,
        schedule="step",
        decay_at=(1 / 3, 2 / 3),
        callbacks=restart_after_drops,
    ),
    _task(
        name="imagenet_resnet152_amsgd",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.2, Fig. 4 and Table 2: ImageNet ResNet-152",
        description=(
            f"ImageNet, {PREPROCESSING}; ResNet-152 (60.4M parameters) with weight decay 1e-4; "
            "batch 256, 90 epochs, step size 0.1 ÷10 at epochs 30 and 60 "
            "(epochs, batch, schedule, weight decay: our reading)"
        ),
        build_model=vision.resnet152,
        epochs=90,
        batch_size=256,
        optimizers=AMORTIZED_OPTIMIZERS,
        schedule="step",
        decay_at=(1 / 3, 2 / 3),
        callbacks=restart_after_drops,
    ),
]


REDUCED = dict(paper="", load=data.mnist1d_large, scale="reduced", evaluation_batch_size=2000,
               data="generated offline (the mnist1d package, 50,000 sequences)")


def _reduced(**fields):
    return Task(**{**REDUCED, **fields})


TASKS += [
    _reduced(
        name="mnist1d_mobilenetv2",
        paper="expectigrad",
        stands_for="Expectigrad §6, Fig. 4, reduced: a 1-D MobileNetV2 on MNIST-1D for ImageNet",
        description=(
            "MNIST-1D at 40,000 training sequences; MobileNetV2 in one dimension (stem 32, "
            "inverted residual stages 16-24-32-64, 1×1 to 256; 148k parameters) with weight "
            "decay 4e-5; batch 256, 12 epochs, constant step size, each method at the paper's "
            "(Yogi's recommended 10× larger)"
        ),
        build_model=models.mobilenet_v2_1d,
        epochs=12,
        batch_size=256,
        optimizers=EXPECTIGRAD_OPTIMIZERS,
    ),
    _reduced(
        name="mnist1d_resnet_igt",
        paper="igt",
        stands_for="IGT §6.1, Fig. 4, reduced: batch 1024 on MNIST-1D for ImageNet ResNet-50",
        description=(
            "MNIST-1D at 40,000 training sequences; ResNet-8 in one dimension (stages of one "
            "basic block, 16-32-64 channels) with weight decay 1e-4; batch 1024 (the paper's "
            "ImageNet batch, 8× its CIFAR one), 12 epochs, step size decreasing linearly to 0"
        ),
        build_model=models.resnet_1d,
        epochs=12,
        batch_size=1024,
        optimizers=IGT_OPTIMIZERS,
        schedule="linear",
    ),
    _reduced(
        name="mnist1d_resnet_amsgd",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.2, Fig. 4 and Table 2, reduced: a 1-D ResNet on MNIST-1D for ImageNet",
        description=(
            "MNIST-1D at 40,000 training sequences; ResNet-8 in one dimension (stages of one "
            "basic block, 16-32-64 channels) with weight decay 1e-4; batch 256, 12 epochs, "
            "η = 0.1 ÷10 after 4 and 8, AM1/AM2-SGD restarted after each drop"
        ),
        build_model=models.resnet_1d,
        epochs=12,
        batch_size=256,
        optimizers=AMORTIZED_OPTIMIZERS,
        schedule="step",
        decay_at=(1 / 3, 2 / 3),
        callbacks=restart_after_drops,
    ),
]
