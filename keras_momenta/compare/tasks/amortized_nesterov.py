"""AM-SGD (Zhou et al. 2020): its experiments as runner tasks.

§6.1 (Fig. 2, Fig. 3b, Table 1): ResNet-34 on CIFAR-10, η₀ = 0.1, β = 0.9,
m = 5, 90 epochs, several seeds "(start at same x0)": the starting weights
are the same for every seed and only the data order (and augmentation)
differs. Here `fixed_initial_weights` does that inside `build_model`: the
runner seeds Keras with the run's seed before `build_model`, and the model is
built under a fixed seed; the run's seed then drives everything after (data
order, augmentation, dropout masks).

§6.3 (Fig. 5, Table 3): the AWD-LSTM language model on Penn Treebank with
the SGD → averaged SGD baseline (`language_model.py`). ImageNet (§6.2) is in
`tasks/imagenet.py`; the CIFAR-100 experiment (Appendix A.7) is not in the
text we have and is left out.
"""

import functools

import keras
import numpy as np

from keras_momenta.compare import data, language_model, resnet
from keras_momenta.compare.tasks import Task

AMORTIZED_OPTIMIZERS = ("sgd", "nesterov_sgd", "om_sgd", "am1_sgd_i", "am1_sgd_ii", "am2_sgd")
# §6.1, Fig. 3a: AM1-SGD over m = 1, 2, 5, 10, 20 with each option (m = 1:
# M-SGD with option I, OM-SGD with option II), passed with --optimizers.
M_SWEEP_OPTIMIZERS = tuple(
    name
    for option, m_1, m_5 in (("i", "nesterov_sgd", "am1_sgd_i"), ("ii", "om_sgd", "am1_sgd_ii"))
    for name in (m_1, f"am1_sgd_{option}_m2", m_5, f"am1_sgd_{option}_m10", f"am1_sgd_{option}_m20")
)
# §6.3: the NT-ASGD baseline at η = 30; M-SGD, AM1-SGD and AM2-SGD (option II,
# m = 5) at η = 2.5, β = 0.99; all with AWD-LSTM's gradient clipping at 0.25.
LANGUAGE_MODEL_OPTIMIZERS = ("nt_asgd", "nesterov_sgd_lm", "am1_sgd_ii_lm", "am2_sgd_lm")

# The seed every run's starting weights are drawn with (our choice of value).
INITIAL_WEIGHTS_SEED = 20_200_917


def fixed_initial_weights(build, seed=INITIAL_WEIGHTS_SEED):
    """`build` wrapped so that every run starts from the same weights.

    The runner calls `keras.utils.set_random_seed(run.seed)` before
    `build_model`; the wrapper first draws a number from that state (so what
    follows still depends on the run's seed), builds the model under `seed`,
    then reseeds Keras, NumPy and Python, and the model's own random layers,
    with the drawn number.
    """

    @functools.wraps(build)
    def wrapped():
        after = int(np.random.randint(0, 2**31 - 1))
        keras.utils.set_random_seed(seed)
        model = build()
        keras.utils.set_random_seed(after)
        # Random layers (dropout) made under `seed` draw from the run's seed too.
        generators = [
            generator
            for layer in model._flatten_layers(include_self=True)
            for generator in getattr(layer, "_seed_generators", [])
        ]
        for index, generator in enumerate(generators):
            generator.state.assign(np.array([after, index], generator.state.dtype))
        return model

    wrapped.fixed_initial_weights = True
    return wrapped


def small_resnet_digits():
    """A CIFAR-style ResNet (`resnet.py`'s blocks: 3×3 stem, basic blocks of
    two 3×3 convolutions with batch norm and identity or 1×1 shortcuts, global
    average pooling) shrunk for 8×8 digits: blocks [1, 1, 1] of 16, 32, 64
    channels (ResNet-8; ResNet-34 is [3, 4, 6, 3] of 64-512)."""
    inputs = keras.Input((8, 8, 1))
    x = keras.layers.ReLU()(resnet._batch_norm()(resnet._conv(16, 3)(inputs)))
    for filters, strides in ((16, 1), (32, 2), (64, 2)):
        x = resnet._basic_block(x, filters, strides)
    x = keras.layers.GlobalAveragePooling2D()(x)
    outputs = keras.layers.Dense(
        10, activation="softmax", kernel_regularizer=keras.regularizers.L2(resnet.WEIGHT_DECAY / 2)
    )(x)
    return keras.Model(inputs, outputs, name="resnet8_digits")


def shift_digits(image, label, seed):
    """Random 8×8 crops of the digit padded by 1 (a shift of at most one
    pixel; no flips for digits), drawn with stateless ops from `seed`."""
    import tensorflow as tf

    padded = tf.image.resize_with_crop_or_pad(image, 10, 10)
    return tf.image.stateless_random_crop(padded, [8, 8, 1], seed=seed), label


TASKS = [
    Task(
        name="cifar10_resnet34",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.1, Fig. 2, Fig. 3b and Table 1 (CIFAR-10 ResNet-34)",
        description=(
            "CIFAR-10 through TFDS, crops and flips; ResNet-34 with weight decay 5e-4 as L2; "
            "batch 128, 90 epochs, η₀ = 0.1 ÷10 after a third and two thirds of the run "
            "(epochs 30 and 60; our reading of 'following Ma and Yarats (2019)'); the same "
            "starting weights for every seed, only the data order differs"
        ),
        load=resnet.cifar10,
        build_model=fixed_initial_weights(resnet.resnet34_cifar),
        epochs=90,
        batch_size=128,
        optimizers=AMORTIZED_OPTIMIZERS,
        augment=resnet.crop_and_flip,
        schedule="step",
        decay_at=(1 / 3, 2 / 3),
        data="TFDS cifar10 (downloads, or prepared in --data-dir)",
    ),
    Task(
        name="ptb_lstm",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.3, Fig. 5 and Table 3 (Penn Treebank LSTM)",
        description=(
            "Penn Treebank (Mikolov's 10k-word version) from local files; AWD-LSTM "
            "(Merity et al. 2018): 3-layer LSTM 1150-1150-400, tied 400-d embeddings, its "
            "dropouts (recurrent DropConnect replaced by recurrent dropout 0.5), AR/TAR, weight "
            "decay 1.2e-6; windows of 70 tokens from a zero state (not carried-state BPTT), batch 20, "
            "500 epochs; NT-ASGD at a constant step size, the others halve it after 15 epochs "
            "without a lower validation loss; metric perplexity = exp(loss)"
        ),
        load=language_model.ptb,
        build_model=language_model.awd_lstm_ptb,
        callbacks=language_model.LanguageModel.task_callbacks,
        epochs=500,
        batch_size=20,
        optimizers=LANGUAGE_MODEL_OPTIMIZERS,
        data="local files <--data-dir>/ptb/ptb.{train,valid,test}.txt (Mikolov's preprocessed PTB)",
        loss=language_model.LOSS,
        metrics=("perplexity",),
        selection="val_loss",
        evaluation_batch_size=20,
    ),
    # Reduced stand-ins (minutes on two CPU cores).
    Task(
        name="digits_resnet8_am",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.1, Fig. 3b and Table 1 (stand-in for CIFAR-10 ResNet-34)",
        description=(
            "scikit-learn digits 8×8 (offline), 1-pixel random shifts; ResNet-8 (16-32-64) with "
            "weight decay 5e-4 as L2; batch 128, 30 epochs, ÷10 after 10 and 20; the same "
            "starting weights for every seed, only the data order differs"
        ),
        load=lambda data_dir=None: data.digits(data_dir, image=True),
        build_model=fixed_initial_weights(small_resnet_digits),
        epochs=30,
        batch_size=128,
        optimizers=AMORTIZED_OPTIMIZERS,
        scale="reduced",
        augment=shift_digits,
        schedule="step",
        decay_at=(1 / 3, 2 / 3),
        evaluation_batch_size=500,
    ),
    Task(
        name="characters_lstm",
        paper="amortized_nesterov",
        stands_for="AM-SGD §6.3, Fig. 5 and Table 3 (stand-in for the Penn Treebank LSTM)",
        description=(
            "character (byte) language model on the first 150 kB of Python's own "
            "pydoc_data.topics help texts (offline, fixed for a Python version); AWD-LSTM's "
            "structure at 256-256-64 units, windows of 100 bytes, batch 32, 8 epochs; NT-ASGD "
            "at a constant step size, the others halve it after 3 epochs without a lower "
            "validation loss; metric perplexity per byte"
        ),
        load=language_model.characters,
        build_model=language_model.character_lstm,
        callbacks=language_model.LanguageModel.task_callbacks,
        epochs=8,
        batch_size=32,
        optimizers=LANGUAGE_MODEL_OPTIMIZERS,
        scale="reduced",
        data="generated offline (Python's pydoc_data.topics)",
        loss=language_model.LOSS,
        metrics=("perplexity",),
        selection="val_loss",
        evaluation_batch_size=200,
    ),
]
