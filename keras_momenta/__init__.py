"""keras_momenta: research optimizers for Keras 3, exact to their papers."""

from keras_momenta._base import MomentaOptimizer
from keras_momenta import callbacks
from keras_momenta.amortized_nesterov import AM1SGD, AM2SGD
from keras_momenta.dissecting_adam import MSSD, MSVAG, AdamStar
from keras_momenta.expectigrad import Expectigrad
from keras_momenta.igt import IGT
from keras_momenta.minibatch import MinibatchVarianceModel
from keras_momenta.registry import OPTIMIZERS, get

__version__ = "0.1.0"

__all__ = [
    "AM1SGD",
    "AM2SGD",
    "AdamStar",
    "Expectigrad",
    "IGT",
    "MSSD",
    "MSVAG",
    "MinibatchVarianceModel",
    "MomentaOptimizer",
    "callbacks",
    "OPTIMIZERS",
    "get",
    "__version__",
]
