"""Shared machinery of keras_momenta/_base.py."""

import keras
import tensorflow as tf

import keras_momenta as km
from keras_momenta._backend import compiling_with_xla
from keras_momenta._base import KERAS_ARGUMENTS


def test_compiling_with_xla_is_true_only_while_tracing_for_xla():
    seen = []

    def step():
        seen.append(compiling_with_xla())
        return tf.constant(0)

    tf.function(step, jit_compile=True)()
    tf.function(step)()
    step()
    tf.function(lambda: tf.function(step, jit_compile=True)())()  # nested, as in Keras's fit
    assert seen == [True, False, False, True]


def _make(cls, **kwargs):
    if cls is km.IGT:
        return cls(keras.optimizers.SGD(0.1), **kwargs)
    return cls(**kwargs)


def test_every_optimizer_forwards_every_keras_argument():
    values = {
        "weight_decay": 0.25,
        "clipnorm": 2.0,
        "ema_momentum": 0.5,
        "ema_overwrite_frequency": 3,
        "loss_scale_factor": 8.0,
        "gradient_accumulation_steps": 2,
        "name": "renamed",
    }
    others = {"clipvalue": 1.5, "global_clipnorm": 3.0}
    for cls in km.OPTIMIZERS.values():
        config = _make(cls, **values).get_config()
        for argument, value in values.items():
            assert config[argument] == value, (cls.__name__, argument)
        for argument, value in others.items():
            assert _make(cls, **{argument: value}).get_config()[argument] == value
    assert set(values) | set(others) | {"use_ema"} == set(KERAS_ARGUMENTS)
