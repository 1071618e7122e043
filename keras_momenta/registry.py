"""Every optimizer of the package by name, for configuration files and tools.

Importing the package also registers each optimizer with Keras's custom
objects under its short name and its class name, so that
`model.compile(optimizer="expectigrad")` and `keras.optimizers.get("MSVAG")`
work like Keras's own names. A name already registered by someone else is left
as it is; the package's own registered names (`"keras_momenta>Expectigrad"`,
which saved files use) work regardless.
"""

import keras

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


def register_short_names():
    """Registers `OPTIMIZERS`' names and class names with Keras's custom
    objects; returns the names this call registered."""
    custom_objects = keras.saving.get_custom_objects()
    registered = []
    for key, cls in OPTIMIZERS.items():
        for name in (key, cls.__name__):
            if name not in custom_objects:
                custom_objects[name] = cls
                registered.append(name)
    return registered


register_short_names()


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
