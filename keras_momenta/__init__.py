"""keras_momenta: research optimizers for Keras 3, exact to their papers."""

from keras_momenta._base import MomentaOptimizer
from keras_momenta.expectigrad import Expectigrad
from keras_momenta.registry import OPTIMIZERS, get

__version__ = "0.1.0"

__all__ = ["Expectigrad", "MomentaOptimizer", "OPTIMIZERS", "get", "__version__"]
