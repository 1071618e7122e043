"""The `tf_keras` (Keras 2) classes of `keras_momenta.official`, for TF
official-models: the float64 references of the paper, as the Keras 3 classes
are checked, and what `tf_keras` users do with an optimizer."""

import copy

import numpy as np
import pytest
import tensorflow as tf

tf_keras = pytest.importorskip("tf_keras")

from keras_momenta import official  # noqa: E402
from tests.harness import KerasSemantics, gradient_stream, initial_params  # noqa: E402
from tests.references import ExpectigradReference  # noqa: E402
from tests.test_conformance import assert_trajectories_close, run_optimizer, run_reference  # noqa: E402
from tests.references.dissecting_adam import (  # noqa: E402
    AdamStarReference,
    MSSDReference,
    MSVAGReference,
)

SHAPES = [(3,), (4, 5), (2, 3, 2)]
STEPS = 200
# A power of two: tf_keras keeps the learning rate in a float32 variable.
LEARNING_RATE = 2.0**-5
# (tf_keras class, float64 reference, settings): each paper's forms.
CASES = [
    (official.Expectigrad, ExpectigradReference, {}),
    (official.Expectigrad, ExpectigradReference, {"momentum": "inner"}),
    (official.Expectigrad, ExpectigradReference, {"momentum": "inner_bias_corrected"}),
    (official.Expectigrad, ExpectigradReference, {"sparse_counter": False}),
    (official.Expectigrad, ExpectigradReference, {"beta": 0.0}),
    (official.Expectigrad, ExpectigradReference, {"beta": 0.5, "epsilon": 1e-3, "learning_rate": 2.0**-3}),
    (official.MSSD, MSSDReference, {}),
    (official.MSSD, MSSDReference, {"momentum": 0.0}),
    (official.MSVAG, MSVAGReference, {}),
    (official.MSVAG, MSVAGReference, {"momentum": 0.0}),
    (official.MSVAG, MSVAGReference, {"released_code": True}),
    (official.AdamStar, AdamStarReference, {}),
    (official.AdamStar, AdamStarReference, {"momentum": 0.5}),
]


def _case_id(case):
    cls, _, settings = case
    return "-".join([cls.__name__] + [f"{k}={v}" for k, v in settings.items()])


def _trajectory(optimizer, params, stream, dtype="float64"):
    variables = [tf.Variable(p, dtype=dtype) for p in params]

    @tf.function
    def step(grads):
        optimizer.apply_gradients(zip(grads, variables))

    trajectory = []
    for grads in stream:
        step([tf.constant(g, dtype=dtype) for g in grads])
        trajectory.append([v.numpy().astype(np.float64) for v in variables])
    return trajectory


@pytest.mark.parametrize("case", CASES, ids=map(_case_id, CASES))
def test_matches_the_float64_reference_for_200_steps(case):
    cls, reference_cls, settings = case
    params, stream = initial_params(SHAPES), gradient_stream(SHAPES, STEPS)
    settings = {"learning_rate": LEARNING_RATE, **settings}
    learning_rate = settings.pop("learning_rate")
    actual = _trajectory(cls(learning_rate, **settings), params, stream)
    expected = run_reference(KerasSemantics(reference_cls(**settings), learning_rate), params, stream)
    scale = max(float(np.max(np.abs(e))) for step in expected for e in step)
    assert_trajectories_close(actual, expected, rtol=1e-10, atol=1e-14 * scale)


@pytest.mark.parametrize("name", ["Expectigrad", "MSSD", "MSVAG", "AdamStar"])
def test_agrees_with_the_keras_3_class_in_float32(name):
    import keras_momenta as km

    params, stream = initial_params(SHAPES), gradient_stream(SHAPES, 50)
    keras_3, _ = run_optimizer(getattr(km, name)(LEARNING_RATE), params, stream, "float32")
    keras_2 = _trajectory(getattr(official, name)(LEARNING_RATE), params, stream, "float32")
    for a_step, e_step in zip(keras_2, keras_3):
        for a, e in zip(a_step, e_step):
            np.testing.assert_allclose(a, e, rtol=2e-6, atol=1e-6)


@pytest.mark.parametrize("cls", [official.Expectigrad, official.MSSD, official.MSVAG, official.AdamStar])
def test_config_round_trips(cls):
    settings = {"momentum": 0.5} if cls is not official.Expectigrad else {"beta": 0.5}
    optimizer = cls(0.25, clipvalue=2.0, **settings)
    config = optimizer.get_config()
    again = cls.from_config(copy.deepcopy(config))  # from_config edits its argument
    assert again.get_config() == config
    assert config["learning_rate"] == 0.25 and config["clipvalue"] == 2.0
    assert list(settings.items())[0] in config.items()


def test_expectigrad_sparse_gradients_match_their_dense_equivalent():
    params = [np.arange(12.0).reshape(4, 3)]
    rows = tf.IndexedSlices(
        tf.constant([[1.0, -2.0, 0.5], [0.25, 0.0, 3.0], [1.0, 1.0, 1.0]], tf.float64),
        tf.constant([2, 0, 2]),
        tf.constant([4, 3]),
    )
    dense = tf.convert_to_tensor(rows)  # repeated rows summed
    results = []
    for gradient in (rows, dense):
        variable = tf.Variable(params[0])
        optimizer = official.Expectigrad(0.1)
        for _ in range(3):
            optimizer.apply_gradients([(gradient, variable)])
        results.append(variable.numpy())
    np.testing.assert_allclose(results[0], results[1], rtol=1e-15)
    # Rows 1 and 3 never had a gradient: no momentum, no step.
    np.testing.assert_array_equal(results[0][[1, 3]], params[0][[1, 3]])
    assert (results[0][[0, 2]] != params[0][[0, 2]]).any()


def test_expectigrad_trains_a_tf_keras_model_and_round_trips_its_config():
    x, y = _regression_data()
    model = _dense_model()
    schedule = tf_keras.optimizers.schedules.ExponentialDecay(0.1, 10, 0.9)
    optimizer = official.Expectigrad(schedule, beta=0.8, momentum="inner", clipnorm=1.0)
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=20, verbose=0)
    assert history.history["loss"][-1] < 0.05 * history.history["loss"][0]
    assert int(optimizer.iterations) == 80
    config = optimizer.get_config()
    again = official.Expectigrad.from_config(copy.deepcopy(config))  # it edits its argument
    assert again.get_config() == config
    assert (again.beta, again.momentum, again.clipnorm) == (0.8, "inner", 1.0)


@pytest.mark.parametrize(
    "cls, argument, value",
    [
        (official.Expectigrad, "beta", 1.0),
        (official.Expectigrad, "epsilon", 0.0),
        (official.Expectigrad, "learning_rate", -1.0),
        (official.Expectigrad, "momentum", "nesterov"),
        (official.Expectigrad, "sparse_counter", 1),
        (official.MSSD, "momentum", 1.0),
        (official.MSVAG, "momentum", -0.1),
        (official.MSVAG, "released_code", "yes"),
        (official.MSVAG, "variance", "exact"),
        (official.AdamStar, "learning_rate", 0.0),
    ],
)
def test_bad_hyperparameters_are_refused_naming_them(cls, argument, value):
    with pytest.raises(ValueError, match=argument):
        cls(**{argument: value})


def test_minibatch_variance_says_what_to_use_instead():
    for cls in (official.MSVAG, official.AdamStar):
        with pytest.raises(ValueError, match="MinibatchVarianceModel.*moving_average"):
            cls(variance="minibatch")


def _regression_data():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 4)).astype("float32")
    return x, x @ np.array([[1.0], [-2.0], [0.5], [3.0]], "float32")


def _dense_model(seed=0):
    initializer = tf_keras.initializers.GlorotUniform(seed=seed)
    return tf_keras.Sequential([tf_keras.layers.Dense(1, input_shape=(4,), kernel_initializer=initializer)])


@pytest.mark.parametrize("cls", [official.Expectigrad, official.MSSD, official.MSVAG, official.AdamStar])
def test_under_loss_scaling_with_mixed_float16(cls):
    """What official-models' `performance.configure_optimizer` does for float16."""
    tf_keras.mixed_precision.set_global_policy("mixed_float16")
    try:
        x, y = _regression_data()
        model = _dense_model()
        optimizer = tf_keras.mixed_precision.LossScaleOptimizer(cls(0.05))
        model.compile(optimizer=optimizer, loss="mse")
        history = model.fit(x, y, batch_size=16, epochs=10, verbose=0)
    finally:
        tf_keras.mixed_precision.set_global_policy("float32")
    assert model.layers[0].kernel.dtype == tf.float32
    assert np.isfinite(history.history["loss"]).all()
    assert history.history["loss"][-1] < history.history["loss"][0]


@pytest.mark.parametrize("cls", [official.Expectigrad, official.MSSD, official.MSVAG, official.AdamStar])
def test_under_mirrored_strategy_matches_one_device(cls, mirrored_strategy):
    x, y = _regression_data()
    weights = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = _dense_model()
            model.compile(optimizer=cls(0.05), loss="mse")
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        weights.append(model.get_weights())
    for mirrored, single in zip(*weights[::-1]):
        np.testing.assert_allclose(mirrored, single, rtol=1e-5, atol=1e-6)
