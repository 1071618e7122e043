"""Optimizer entries of the comparison runner.

An entry builds its optimizer from a learning rate (a float or the schedule
the runner makes from the task's) and carries its default step size and its
sweep grid. Every grid has the same budget: five step sizes, half a decade
apart, centred on the entry's default (`--grid` replaces it), so no method
gets more tuning than another. Other hyperparameters are each paper's.
"""

import dataclasses
import json
import pathlib
from typing import Callable, Optional

import keras

import keras_momenta as km
from keras_momenta.compare import baselines, language_model

GRID_POINTS = 5


def log_grid(centre, points=GRID_POINTS, step=10**0.5):
    """`points` step sizes, a factor `step` apart, centred on `centre`
    (3 significant digits)."""
    half = (points - 1) / 2
    return tuple(float(f"{centre * step ** (k - half):.3g}") for k in range(points))


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    description: str
    build: Callable  # learning rate -> optimizer
    learning_rate: float
    # Wraps the task's model (the mini-batch variance entries need per-example gradients).
    wrap_model: Optional[Callable] = None

    @property
    def grid(self):
        return log_grid(self.learning_rate)


def _entries(*entries):
    return {entry.name: entry for entry in entries}


HEAVY_BALL = 0.9

OPTIMIZERS = _entries(
    Entry("sgd", "SGD", keras.optimizers.SGD, 0.1),
    Entry(
        "sgd_momentum",
        "SGD with heavy-ball momentum 0.9 (the IGT paper's HB, Dissecting Adam's M-SGD)",
        lambda lr: keras.optimizers.SGD(lr, momentum=HEAVY_BALL),
        0.01,
    ),
    Entry(
        "nesterov_sgd",
        "SGD with Nesterov momentum 0.9 (the AM-SGD paper's M-SGD, η = 0.1 as for every method there)",
        lambda lr: keras.optimizers.SGD(lr, momentum=HEAVY_BALL, nesterov=True),
        0.1,
    ),
    Entry("adam", "Adam (Keras defaults)", keras.optimizers.Adam, 1e-3),
    Entry("amsgrad", "AMSGrad", lambda lr: keras.optimizers.Adam(lr, amsgrad=True), 1e-3),
    Entry("rmsprop", "RMSprop (Keras defaults)", keras.optimizers.RMSprop, 1e-3),
    Entry("adagrad", "AdaGrad (Keras defaults)", keras.optimizers.Adagrad, 1e-2),
    # TensorFlow's defaults, which the Expectigrad paper's MNIST run uses.
    Entry("adadelta", "Adadelta (TensorFlow's defaults: ρ = 0.95, α = 1e-3)", keras.optimizers.Adadelta, 1e-3),
    Entry("adafactor", "Adafactor (Keras defaults)", keras.optimizers.Adafactor, 1e-3),
    # Expectigrad (Daley & Amato 2020): its defaults, β = 0.9; the momentum
    # forms of its Fig. 2 (left) ablation.
    Entry("expectigrad", "Expectigrad (β = 0.9)", km.Expectigrad, 1e-3),
    Entry(
        "expectigrad_inner", "Expectigrad with inner momentum (β = 0.9, no bias correction)",
        lambda lr: km.Expectigrad(lr, momentum="inner"), 1e-3,
    ),
    Entry(
        "expectigrad_inner_bias_corrected", "Expectigrad with bias-corrected inner momentum (β = 0.9)",
        lambda lr: km.Expectigrad(lr, momentum="inner_bias_corrected"), 1e-3,
    ),
    # Baselines of the papers that Keras lacks (`baselines.py`): Yogi (the
    # Expectigrad paper's), QHM and AggMo (the AM-SGD paper's Appendix A.5).
    Entry("yogi", "Yogi (Zaheer et al. 2018 defaults)", baselines.Yogi, 1e-2),
    Entry("qhm", "QHM (ν = 0.7, β = 0.999)", baselines.QHM, 1.0),
    Entry("aggmo", "AggMo (β = 0, 0.9, 0.99)", baselines.AggMo, 0.01),
)

# IGT (Arnold et al. 2019, Section 6.1): anytime tail averaging on its own and
# as the gradient estimator of heavy ball (0.9) and Adam (defaults). The
# paper's c is tuned; 0.1 (the last 10% of gradients) is ours.
ITA_TAIL_FRACTION = 0.1
OPTIMIZERS.update(_entries(
    Entry(
        "ita", "ITA: IGT over SGD, c = 0.1",
        lambda lr: km.IGT(keras.optimizers.SGD(lr), tail_fraction=ITA_TAIL_FRACTION), 0.1,
    ),
    Entry(
        "hb_ita", "HB-ITA: IGT over heavy ball 0.9, c = 0.1",
        lambda lr: km.IGT(
            keras.optimizers.SGD(lr, momentum=HEAVY_BALL), tail_fraction=ITA_TAIL_FRACTION
        ),
        0.01,
    ),
    Entry(
        "adam_ita", "Adam-ITA: IGT over Adam, c = 0.1",
        lambda lr: km.IGT(keras.optimizers.Adam(lr), tail_fraction=ITA_TAIL_FRACTION), 1e-3,
    ),
))


def _minibatch_variance_model(model):
    return km.MinibatchVarianceModel(model)


# Dissecting Adam (Balles & Hennig 2018, Section 4): the recombinations of sign
# and variance adaptation with μ = 0.9; ADAM* is Adam with the paper's
# variance adaptation; "_mb" entries take the mini-batch variance estimate
# (its Eq. 44) through `km.MinibatchVarianceModel`. M-SVAG's m is an average
# of gradients where Keras's heavy ball keeps a sum (≈ g/(1 − μ)): its larger
# default step.
OPTIMIZERS.update(_entries(
    Entry("m_ssd", "M-SSD (μ = 0.9)", lambda lr: km.MSSD(lr, momentum=HEAVY_BALL), 1e-3),
    Entry("m_svag", "M-SVAG (μ = 0.9)", lambda lr: km.MSVAG(lr, momentum=HEAVY_BALL), 0.1),
    Entry(
        "m_svag_mb", "M-SVAG (μ = 0.9) with mini-batch variance estimates",
        lambda lr: km.MSVAG(lr, momentum=HEAVY_BALL, variance="minibatch"), 0.1,
        wrap_model=_minibatch_variance_model,
    ),
    Entry("adam_star", "ADAM* (β₁ = 0.9)", lambda lr: km.AdamStar(lr, momentum=HEAVY_BALL), 1e-3),
))

# AM-SGD (Zhou et al. 2020, Section 6): β = 0.9, m = 5; OM-SGD is AM1-SGD with
# m = 1 and option II. AM2-SGD's index seed comes from the run's seed.
AM_MOMENTUM, AM_AMORTIZATION = 0.9, 5
OPTIMIZERS.update(_entries(
    Entry(
        "om_sgd", "OM-SGD (AM1-SGD, m = 1)",
        lambda lr: km.AM1SGD(lr, AM_MOMENTUM, amortization=1, option="II"), 0.1,
    ),
    Entry(
        "am1_sgd_i", "AM1-SGD option I (β = 0.9, m = 5)",
        lambda lr: km.AM1SGD(lr, AM_MOMENTUM, amortization=AM_AMORTIZATION, option="I"), 0.1,
    ),
    Entry(
        "am1_sgd_ii", "AM1-SGD option II (β = 0.9, m = 5)",
        lambda lr: km.AM1SGD(lr, AM_MOMENTUM, amortization=AM_AMORTIZATION, option="II"), 0.1,
    ),
    Entry(
        "am2_sgd", "AM2-SGD option II (β = 0.9, m = 5)",
        lambda lr: km.AM2SGD(lr, AM_MOMENTUM, amortization=AM_AMORTIZATION, option="II"), 0.1,
    ),
))


def _am1_sgd(option, amortization):
    return lambda lr: km.AM1SGD(lr, AM_MOMENTUM, amortization=amortization, option=option)


# AM-SGD §6.1, Fig. 3a sweeps AM1-SGD's m with both options (m = 1 is
# nesterov_sgd for option I and om_sgd for option II; m = 5 is above).
AMORTIZATION_SWEEP = (2, 10, 20)
OPTIMIZERS.update(_entries(*(
    Entry(
        f"am1_sgd_{option.lower()}_m{m}", f"AM1-SGD option {option} (β = 0.9, m = {m})",
        _am1_sgd(option, m), 0.1,
    )
    for option in ("I", "II")
    for m in AMORTIZATION_SWEEP
)))


# AM-SGD §6.3, the Penn Treebank LSTM in the AWD-LSTM setting: β = 0.99 and
# gradient-norm clipping 0.25 for every method; the baseline is NT-ASGD
# (Merity et al. 2018: SGD switching to averaged SGD).
LM_MOMENTUM, LM_CLIPNORM = 0.99, 0.25
OPTIMIZERS.update(_entries(
    Entry(
        "nt_asgd", "NT-ASGD: SGD switching to averaged SGD (Merity et al. 2018), clip 0.25",
        lambda lr: language_model.NTASGD(lr, global_clipnorm=LM_CLIPNORM), 30.0,
    ),
    Entry(
        "nesterov_sgd_lm", "M-SGD, Nesterov β = 0.99, clip 0.25 (AM-SGD §6.3)",
        lambda lr: keras.optimizers.SGD(
            lr, momentum=LM_MOMENTUM, nesterov=True, global_clipnorm=LM_CLIPNORM
        ),
        2.5,
    ),
    Entry(
        "am1_sgd_ii_lm", "AM1-SGD option II (β = 0.99, m = 5), clip 0.25 (AM-SGD §6.3)",
        lambda lr: km.AM1SGD(
            lr, LM_MOMENTUM, amortization=AM_AMORTIZATION, option="II", global_clipnorm=LM_CLIPNORM
        ),
        2.5,
    ),
    Entry(
        "am2_sgd_lm", "AM2-SGD option II (β = 0.99, m = 5), clip 0.25 (AM-SGD §6.3)",
        lambda lr: km.AM2SGD(
            lr, LM_MOMENTUM, amortization=AM_AMORTIZATION, option="II", global_clipnorm=LM_CLIPNORM
        ),
        2.5,
    ),
))

TUNED_PATH = pathlib.Path(__file__).with_name("tuned_learning_rates.json")


def tuned_learning_rates():
    """{task: {entry: step size}} chosen by the committed sweeps (`--tune`)."""
    if not TUNED_PATH.exists():
        return {}
    return {task: record["learning_rates"] for task, record in json.loads(TUNED_PATH.read_text()).items()}


def entry(name):
    if name not in OPTIMIZERS:
        raise ValueError(
            f"Unknown optimizer entry {name!r}; known: {', '.join(sorted(OPTIMIZERS))}."
        )
    return OPTIMIZERS[name]


def learning_rate_schedule(task, learning_rate, steps_per_epoch, epochs):
    """The task's schedule over a run of `epochs`, starting at `learning_rate`."""
    total_steps = steps_per_epoch * epochs
    if task.schedule == "linear":
        return keras.optimizers.schedules.PolynomialDecay(
            learning_rate, decay_steps=total_steps, end_learning_rate=0.0, power=1.0
        )
    if task.schedule == "step":
        boundaries = [int(round(fraction * total_steps)) for fraction in task.decay_at]
        values = [learning_rate * 0.1**k for k in range(len(boundaries) + 1)]
        return keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return learning_rate


def make_optimizer(name, task, learning_rate, steps_per_epoch, epochs):
    schedule = learning_rate_schedule(task, learning_rate, steps_per_epoch, epochs)
    return entry(name).build(schedule)
