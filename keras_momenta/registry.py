"""Every optimizer of the package by name, for configuration files and tools."""

from keras_momenta.amortized_nesterov import AM1SGD, AM2SGD
from keras_momenta.dissecting_adam import MSSD, MSVAG, AdamStar
from keras_momenta.expectigrad import Expectigrad
from keras_momenta.igt import IGT

OPTIMIZERS = {
    "am1sgd": AM1SGD,
    "am2sgd": AM2SGD,
    "adamstar": AdamStar,
    "expectigrad": Expectigrad,
    "igt": IGT,
    "mssd": MSSD,
    "msvag": MSVAG,
}


def get(identifier, **kwargs):
    """The optimizer class named `identifier`, instantiated with `kwargs`.

    Names are case-insensitive; `identifier` may also be a class of this
    package. Raises `ValueError` listing the known names otherwise.
    """
    if isinstance(identifier, type) and identifier in OPTIMIZERS.values():
        return identifier(**kwargs)
    key = str(identifier).lower()
    if key not in OPTIMIZERS:
        raise ValueError(
            f"Unknown keras_momenta optimizer {identifier!r}; "
            f"known: {', '.join(sorted(OPTIMIZERS))}."
        )
    return OPTIMIZERS[key](**kwargs)
