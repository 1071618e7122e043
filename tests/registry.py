"""One entry per optimizer configuration checked by the conformance suite.

A later optimizer joins the suite by adding entries here (and its reference
under `tests/references/`).
"""

import dataclasses
from typing import Any, Callable, Optional

import keras
import pytest

import keras_momenta as km
from tests.harness import minibatch_statistics
from tests.references import ExpectigradReference, IGTReference
from tests.references.amortized_nesterov import AM1Reference, AM2Reference
from tests.references.dissecting_adam import AdamStarReference, MSSDReference, MSVAGReference


@dataclasses.dataclass(frozen=True)
class OptimizerCase:
    id: str
    cls: type
    kwargs: dict
    reference: Callable[..., Any]
    # (constructor kwargs, argument name the ValueError must mention)
    invalid: tuple = ()
    # Keras keeps the learning rate in a float32 variable: a power of two is
    # exact there, so float64 runs can be compared at rtol 1e-10.
    learning_rate: float = 2.0**-5
    # Builds the optimizer from the case's keyword arguments (default: cls).
    factory: Optional[Callable[..., Any]] = None
    # Shared Keras arguments the optimizer refuses: name -> expected message.
    unsupported: dict = dataclasses.field(default_factory=dict)
    # Run only with the slow tests (CI), to keep the default run short.
    slow: bool = False
    # variance="minibatch": `statistics(stream)` gives per-example statistics
    # for each step of a gradient stream, handed to the optimizer before the
    # step, and `wrap_model(model)` makes `fit` compute and hand them over.
    statistics: Optional[Callable[..., Any]] = None
    wrap_model: Optional[Callable[..., Any]] = None
    # The optimizer keeps no per-variable state at all (SSD).
    stateless: bool = False

    def make(self, **overrides):
        kwargs = {"learning_rate": self.learning_rate, **self.kwargs, **overrides}
        return (self.factory or self.cls)(**kwargs)

    @property
    def param(self):
        marks = [pytest.mark.slow] if self.slow else []
        return pytest.param(self, id=self.id, marks=marks)

    def make_reference(self):
        return self.reference(**self.kwargs)


LEARNING_RATE_INVALID = (
    ({"learning_rate": 0.0}, "learning_rate"),
    ({"learning_rate": -1e-3}, "learning_rate"),
    ({"learning_rate": float("inf")}, "learning_rate"),
    ({"learning_rate": float("nan")}, "learning_rate"),
    ({"learning_rate": True}, "learning_rate"),
)
EXPECTIGRAD_INVALID = LEARNING_RATE_INVALID + (
    ({"beta": 1.0}, "beta"),
    ({"beta": 0.99999999}, "beta"),  # 1.0 in float32, where the update computes
    ({"epsilon": float("inf")}, "epsilon"),
    ({"beta": -0.1}, "beta"),
    ({"epsilon": 0.0}, "epsilon"),
    ({"epsilon": -1e-8}, "epsilon"),
    ({"sparse_counter": "yes"}, "sparse_counter"),
    ({"momentum": "nesterov"}, "momentum"),
    ({"momentum": "Inner"}, "momentum"),
    ({"momentum": None}, "momentum"),
)

CASES = [
    OptimizerCase(
        f"expectigrad-beta{beta}-{'sparse' if sparse else 'dense'}_counter",
        km.Expectigrad,
        {"beta": beta, "sparse_counter": sparse},
        ExpectigradReference,
        invalid=EXPECTIGRAD_INVALID,
        # The default run keeps the paper's default and its opposite corner.
        slow=(beta, sparse) in [(0.9, False), (0.0, True)],
    )
    for beta, sparse in [(0.9, True), (0.9, False), (0.0, True), (0.0, False)]
]
# The inner-momentum forms of the paper's ablation (Section 4.2): not a grid
# (with β = 0 every form is the outer case's update). The default run keeps
# the bias-corrected form with the paper's counter; the plain one runs in CI.
CASES += [
    OptimizerCase(
        f"expectigrad-beta0.9-{form}-{'sparse' if sparse else 'dense'}_counter",
        km.Expectigrad,
        {"beta": 0.9, "sparse_counter": sparse, "momentum": form},
        ExpectigradReference,
        invalid=EXPECTIGRAD_INVALID,
        slow=(form == "inner"),
    )
    for form, sparse in [("inner_bias_corrected", True), ("inner", False)]
]


# IGT: inner optimizers with hyperparameters exact in float32 (Keras casts
# momentum and β to the variable dtype through float32, and its PyTorch
# backend rounds every Python float, ε included, to float32).
IGT_INNERS = {
    "sgd": (keras.optimizers.SGD, {}),
    "momentum": (keras.optimizers.SGD, {"momentum": 0.875}),
    "nesterov": (keras.optimizers.SGD, {"momentum": 0.875, "nesterov": True}),
    "adam": (keras.optimizers.Adam, {"beta_1": 0.875, "beta_2": 1 - 2.0**-10, "epsilon": 2.0**-23}),
    "rmsprop": (keras.optimizers.RMSprop, {"rho": 0.875, "epsilon": 2.0**-23}),
}
REFERENCE_INNERS = {
    "sgd": ("sgd", {}),
    "momentum": ("sgd", {"momentum": 0.875}),
    "nesterov": ("sgd", {"momentum": 0.875, "nesterov": True}),
    "adam": ("adam", {"beta_1": 0.875, "beta_2": 1 - 2.0**-10, "epsilon": 2.0**-23}),
    "rmsprop": ("rmsprop", {"rho": 0.875, "epsilon": 2.0**-23}),
}


def make_igt(learning_rate, inner, **kwargs):
    """IGT around `inner` (a key of IGT_INNERS or a Keras optimizer class)."""
    inner_cls, inner_kwargs = IGT_INNERS[inner] if isinstance(inner, str) else (inner, {})
    return km.IGT(inner_cls(learning_rate=learning_rate, **inner_kwargs), **kwargs)


def igt_reference(inner, **kwargs):
    return IGTReference(inner=REFERENCE_INNERS[inner], **kwargs)


IGT_INVALID = (
    ({"tail_fraction": 0.0}, "tail_fraction"),
    ({"tail_fraction": 1.5}, "tail_fraction"),
    ({"tail_fraction": True}, "tail_fraction"),
    ({"tail_fraction": 1e-50}, "tail_fraction"),  # 0.0 in float32
    ({"nonnegative_momentum": 1}, "nonnegative_momentum"),
    ({"inner": keras.optimizers.Lamb}, "inner_optimizer"),
    ({"inner": keras.optimizers.Nadam}, "inner_optimizer"),
)
# Full product in CI (slow tests); the default run has every inner once and
# every c at least once.
_IGT_DEFAULT_RUN = {
    ("sgd", 1.0), ("momentum", 0.5), ("nesterov", 0.2), ("adam", 0.5), ("rmsprop", 1.0)
}
CASES += [
    OptimizerCase(
        f"igt-{inner}-c{c}",
        km.IGT,
        {"inner": inner, "tail_fraction": c},
        igt_reference,
        invalid=IGT_INVALID,
        factory=make_igt,
        unsupported={"use_ema": "use_ema"},
        slow=(inner, c) not in _IGT_DEFAULT_RUN,
    )
    for inner in IGT_INNERS
    for c in (1.0, 0.5, 0.2)
]

# Dissecting Adam (Balles & Hennig 2018): M-SSD, M-SVAG and ADAM*, each with
# μ = 0 (SSD, SVAG) and both variance estimates. To keep the default run
# short it checks M-SSD and M-SVAG with μ = 0.9 in both variance modes (ADAM*
# shares M-SVAG's code but for its last line, which tests/test_dissecting_adam.py
# checks); the full product runs in CI.
_DISSECTING_DEFAULT_RUN = {"mssd-mu0.9", "msvag-mu0.9-moving_average", "msvag-mu0.9-minibatch"}
MOMENTUM_INVALID = LEARNING_RATE_INVALID + (
    ({"momentum": 1.0}, "momentum"),
    ({"momentum": 0.99999999}, "momentum"),  # 1.0 in float32
    ({"momentum": -0.1}, "momentum"),
    ({"momentum": "0.9"}, "momentum"),
)
VARIANCE_INVALID = MOMENTUM_INVALID + (
    ({"variance": "adam"}, "variance"),
    ({"variance": None}, "variance"),
)
MSVAG_INVALID = VARIANCE_INVALID + (
    ({"released_code": 1}, "released_code"),
    ({"released_code": True, "variance": "minibatch"}, "released_code"),
)
MINIBATCH = {"statistics": minibatch_statistics, "wrap_model": km.MinibatchVarianceModel}
CASES += [
    OptimizerCase(
        f"mssd-mu{mu}", km.MSSD, {"momentum": mu}, MSSDReference,
        invalid=MOMENTUM_INVALID, stateless=(mu == 0), slow=(f"mssd-mu{mu}" not in _DISSECTING_DEFAULT_RUN),
    )
    for mu in (0.9, 0.0)
]
CASES += [
    OptimizerCase(
        case_id,
        km.MSVAG,
        {"momentum": mu, "variance": variance, **({"released_code": True} if released else {})},
        MSVAGReference,
        invalid=MSVAG_INVALID,
        slow=case_id not in _DISSECTING_DEFAULT_RUN,
        **(MINIBATCH if variance == "minibatch" else {}),
    )
    for mu in (0.9, 0.0)
    for variance, released in (("moving_average", False), ("moving_average", True), ("minibatch", False))
    for case_id in [f"msvag-mu{mu}-{variance}{'-released_code' if released else ''}"]
]
CASES += [
    OptimizerCase(
        f"adamstar-mu{mu}-{variance}",
        km.AdamStar,
        {"momentum": mu, "variance": variance},
        AdamStarReference,
        invalid=VARIANCE_INVALID,
        slow=True,
        **(MINIBATCH if variance == "minibatch" else {}),
    )
    for mu in (0.9, 0.0)
    for variance in ("moving_average", "minibatch")
]

# Amortized Nesterov (Zhou et al. 2020): AM1-SGD and AM2-SGD, both options,
# m = 1 (Nesterov), 3 and 5 (blocks end mid-stream and in step with the
# stream's 17-step pattern). The default run keeps m = 3.
AMORTIZED_INVALID = MOMENTUM_INVALID + (
    ({"amortization": 0}, "amortization"),
    ({"amortization": 2.0}, "amortization"),
    ({"amortization": True}, "amortization"),
    ({"amortization": 2**40}, "amortization"),
    ({"option": "III"}, "option"),
    ({"option": 2}, "option"),
)
CASES += [
    OptimizerCase(
        f"{name}-option{option}-m{m}",
        cls,
        {"momentum": 0.875, "amortization": m, "option": option, **extra},
        reference,
        invalid=AMORTIZED_INVALID + invalid,
        unsupported={"use_ema": "use_ema"} if option == "II" else {},
        slow=(m != 3),
    )
    for name, cls, reference, extra, invalid in (
        ("am1sgd", km.AM1SGD, AM1Reference, {}, ()),
        ("am2sgd", km.AM2SGD, AM2Reference, {"seed": 20200},
         (({"seed": -1}, "seed"), ({"seed": 2**32}, "seed"), ({"seed": 1.5}, "seed"))),
    )
    for option in ("I", "II")
    for m in (1, 3, 5)
]

# Each package optimizer class must have at least one case.
assert set(km.OPTIMIZERS.values()) <= {case.cls for case in CASES}
