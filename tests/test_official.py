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


def _trajectory(optimizer, params, stream, dtype="float64", variables=None):
    if variables is None:
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


@pytest.mark.parametrize("name", ["Expectigrad", "MSSD", "MSVAG", "AdamStar", "AM1SGD", "AM2SGD"])
def test_agrees_with_the_keras_3_class_in_float32(name):
    import keras_momenta as km

    settings = {"seed": 7} if name == "AM2SGD" else {}
    params, stream = initial_params(SHAPES), gradient_stream(SHAPES, 50)
    keras_3, _ = run_optimizer(getattr(km, name)(LEARNING_RATE, **settings), params, stream, "float32")
    keras_2 = _trajectory(getattr(official, name)(LEARNING_RATE, **settings), params, stream, "float32")
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


def _igt_with_momentum(learning_rate):
    return official.IGT({"type": "sgd", "sgd": {"momentum": 0.9}}, tail_fraction=0.5, learning_rate=learning_rate)


def _am2sgd_seeded(learning_rate):
    return official.AM2SGD(learning_rate, amortization=3, seed=5)  # one index sequence for both runs


TRAINING_FACTORIES = [
    official.Expectigrad, official.MSSD, official.MSVAG, official.AdamStar, _igt_with_momentum, official.AM1SGD,
    _am2sgd_seeded,
]
_factory_id = lambda factory: getattr(factory, "__name__", "").strip("_")  # noqa: E731


@pytest.mark.parametrize("cls", TRAINING_FACTORIES, ids=_factory_id)
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


@pytest.mark.parametrize("cls", TRAINING_FACTORIES, ids=_factory_id)
def test_under_mirrored_strategy_matches_one_device(cls, mirrored_strategy):
    x, y = _regression_data()
    weights = []
    for strategy in (tf.distribute.get_strategy(), mirrored_strategy):
        with strategy.scope():
            model = _dense_model()
            model.compile(optimizer=cls(0.05), loss="mse")
        model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
        weights.append(model.get_weights())
        if hasattr(model.optimizer, "evaluation_weights"):  # and its answer
            weights.append([w.numpy() for w in model.optimizer.evaluation_weights(model.trainable_variables)])
    half = len(weights) // 2
    for single, mirrored in zip(weights[:half], weights[half:]):
        for a, b in zip(single, mirrored):
            np.testing.assert_allclose(b, a, rtol=1e-5, atol=1e-6)


# ---------------------------------------------------------------------- IGT

# tf_keras legacy inner optimizers and the float64 references of their Keras 3
# counterparts (hyperparameters exact in float32, as in tests/registry.py).
IGT_INNERS = {
    "sgd": (lambda lr: tf_keras.optimizers.legacy.SGD(lr), ("sgd", {})),
    "momentum": (lambda lr: tf_keras.optimizers.legacy.SGD(lr, momentum=0.875), ("sgd", {"momentum": 0.875})),
    "nesterov": (
        lambda lr: tf_keras.optimizers.legacy.SGD(lr, momentum=0.875, nesterov=True),
        ("sgd", {"momentum": 0.875, "nesterov": True}),
    ),
    "adam": (
        lambda lr: tf_keras.optimizers.legacy.Adam(lr, beta_1=0.875, beta_2=1 - 2.0**-10, epsilon=2.0**-23),
        ("adam", {"beta_1": 0.875, "beta_2": 1 - 2.0**-10, "epsilon": 2.0**-23}),
    ),
}


@pytest.mark.parametrize("c", [1.0, 0.5, 0.2])
@pytest.mark.parametrize("inner", sorted(IGT_INNERS))
def test_igt_matches_the_float64_reference_for_200_steps(inner, c):
    from tests.references.igt import IGTReference

    make_inner, reference_inner = IGT_INNERS[inner]
    params, stream = initial_params(SHAPES), gradient_stream(SHAPES, STEPS)
    optimizer = official.IGT(make_inner(LEARNING_RATE), tail_fraction=c)
    variables = [tf.Variable(p, dtype="float64") for p in params]
    actual = _trajectory(optimizer, params, stream, variables=variables)
    reference = IGTReference(inner=reference_inner, tail_fraction=c)
    expected = run_reference(KerasSemantics(reference, LEARNING_RATE), params, stream)
    scale = max(float(np.max(np.abs(e))) for step in expected for e in step)
    assert_trajectories_close(actual, expected, rtol=1e-10, atol=1e-14 * scale)
    # The answer, θ, is not the shifted point the model holds.
    answer = [a.numpy() for a in optimizer.evaluation_weights(variables)]
    assert_trajectories_close([answer], [reference.theta], rtol=1e-10, atol=1e-14 * scale)
    assert max(float(np.max(np.abs(a - v.numpy()))) for a, v in zip(answer, variables)) > 1e-3
    assert int(optimizer.inner_optimizer.iterations) == STEPS


def test_igt_swaps_its_answer_in_and_back_exactly():
    variables = [tf.Variable(p) for p in initial_params(SHAPES)]
    optimizer = official.IGT(tf_keras.optimizers.legacy.SGD(0.1, momentum=0.5), tail_fraction=0.5)
    for grads in gradient_stream(SHAPES, 5):
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    training = [v.numpy() for v in variables]
    answer = [a.numpy() for a in optimizer.evaluation_weights(variables)]
    optimizer.swap_answer_weights(variables)
    for v, a in zip(variables, answer):
        np.testing.assert_array_equal(v.numpy(), a)
    optimizer.swap_answer_weights(variables)
    for v, t in zip(variables, training):
        np.testing.assert_array_equal(v.numpy(), t)


def test_igt_checkpoint_resumes_the_exact_trajectory(tmp_path):
    """The inner optimizer's state (its slots for IGT's step collectors, its
    counter) is saved with IGT's."""
    stream = gradient_stream(SHAPES, 12)

    def run(steps, variables, optimizer):
        for grads in steps:
            optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))

    def make():
        variables = [tf.Variable(p) for p in initial_params(SHAPES)]
        inner = tf_keras.optimizers.legacy.Adam(0.05, beta_1=0.5)
        return variables, official.IGT(inner, tail_fraction=0.5)

    variables, optimizer = make()
    run(stream, variables, optimizer)
    expected = [v.numpy() for v in variables] + [a.numpy() for a in optimizer.evaluation_weights(variables)]

    variables, optimizer = make()
    run(stream[:5], variables, optimizer)
    path = tf.train.Checkpoint(variables=variables, optimizer=optimizer).save(str(tmp_path / "ckpt"))
    variables, optimizer = make()
    tf.train.Checkpoint(variables=variables, optimizer=optimizer).restore(path).assert_existing_objects_matched()
    run(stream[5:], variables, optimizer)
    resumed = [v.numpy() for v in variables] + [a.numpy() for a in optimizer.evaluation_weights(variables)]
    for a, e in zip(resumed, expected):
        np.testing.assert_array_equal(a, e)
    assert int(optimizer.inner_optimizer.iterations) == 12


def test_igt_takes_its_inner_optimizer_by_name_or_official_config_and_round_trips():
    by_config = official.IGT(
        {"type": "adam", "adam": {"beta_1": 0.8, "clipnorm": None}}, tail_fraction=0.25, learning_rate=0.5
    )
    assert type(by_config.inner_optimizer) is tf_keras.optimizers.legacy.Adam
    assert by_config.inner_optimizer.get_config()["beta_1"] == 0.8
    assert float(by_config.learning_rate) == 0.5
    by_name = official.IGT("expectigrad", learning_rate=0.25, clipnorm=1.0)
    assert type(by_name.inner_optimizer) is official.Expectigrad
    for optimizer in (by_config, by_name):
        config = optimizer.get_config()
        again = official.IGT.from_config(copy.deepcopy(config))
        assert again.get_config() == config


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: official.IGT("sgd", tail_fraction=0.0), "tail_fraction"),
        (lambda: official.IGT("sgd", nonnegative_momentum="yes"), "nonnegative_momentum"),
        (lambda: official.IGT("ftrl"), "'ftrl' is not supported by IGT"),
        (lambda: official.IGT(tf_keras.optimizers.legacy.Ftrl(0.1)), "Ftrl is not supported by IGT"),
        (lambda: official.IGT(tf_keras.optimizers.legacy.Nadam(0.1)), "Nadam is not supported by IGT"),
        (lambda: official.IGT(0.1), "must be a tf_keras legacy optimizer"),
        (lambda: official.IGT(tf_keras.optimizers.legacy.SGD(0.1), learning_rate=0.1), "set it on one"),
        (lambda: official.IGT(tf_keras.optimizers.legacy.SGD(0.1, clipnorm=1.0)), "set it on IGT"),
    ],
)
def test_igt_refuses_bad_arguments_saying_why(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_igt_refuses_an_inner_optimizer_that_has_state():
    inner = tf_keras.optimizers.legacy.SGD(0.1, momentum=0.9)
    variable = tf.Variable([1.0])
    inner.apply_gradients([(tf.constant([1.0]), variable)])
    with pytest.raises(ValueError, match="must be new"):
        official.IGT(inner)


# ---------------------------------------------------------------- AM1-SGD


@pytest.mark.parametrize("option", ["I", "II"])
@pytest.mark.parametrize("amortization", [1, 3, 5])
@pytest.mark.parametrize("name", ["AM1SGD", "AM2SGD"])
def test_amortized_nesterov_matches_the_float64_reference_for_200_steps(name, amortization, option):
    from tests.references.amortized_nesterov import AM1Reference, AM2Reference

    settings = {"momentum": 0.875, "amortization": amortization, "option": option}
    if name == "AM2SGD":
        settings["seed"] = 12345
    params, stream = initial_params(SHAPES), gradient_stream(SHAPES, STEPS)
    optimizer = getattr(official, name)(LEARNING_RATE, **settings)
    variables = [tf.Variable(p, dtype="float64") for p in params]
    actual = _trajectory(optimizer, params, stream, variables=variables)
    reference = (AM1Reference if name == "AM1SGD" else AM2Reference)(**settings)
    expected = run_reference(KerasSemantics(reference, LEARNING_RATE), params, stream)
    scale = max(float(np.max(np.abs(e))) for step in expected for e in step)
    assert_trajectories_close(actual, expected, rtol=1e-10, atol=1e-14 * scale)
    answer = [a.numpy() for a in optimizer.evaluation_weights(variables)]
    assert_trajectories_close([answer], [reference.output_point()], rtol=1e-10, atol=1e-14 * scale)
    if option == "II":
        assert max(float(np.max(np.abs(a - v.numpy()))) for a, v in zip(answer, variables)) > 1e-3


def test_am1sgd_option_ii_swaps_its_average_in_and_back_and_round_trips_its_config():
    variables = [tf.Variable(p) for p in initial_params(SHAPES)]
    optimizer = official.AM1SGD(0.1, momentum=0.5, amortization=3)
    for grads in gradient_stream(SHAPES, 7):
        optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))
    training = [v.numpy() for v in variables]
    answer = [a.numpy() for a in optimizer.evaluation_weights(variables)]
    optimizer.swap_answer_weights(variables)
    for v, a in zip(variables, answer):
        np.testing.assert_array_equal(v.numpy(), a)
    optimizer.swap_answer_weights(variables)
    for v, t in zip(variables, training):
        np.testing.assert_array_equal(v.numpy(), t)
    config = optimizer.get_config()
    again = official.AM1SGD.from_config(copy.deepcopy(config))
    assert again.get_config() == config
    assert (again.momentum, again.amortization, again.option) == (0.5, 3, "II")


@pytest.mark.parametrize(
    "argument, value", [("amortization", 0), ("amortization", 2.5), ("option", "III"), ("momentum", 1.0)]
)
def test_am1sgd_refuses_bad_hyperparameters_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        official.AM1SGD(**{argument: value})


def test_am2sgd_checkpoint_restores_the_table_and_the_index_sequence(tmp_path):
    stream = gradient_stream(SHAPES, 12)

    def run(steps, variables, optimizer):
        for grads in steps:
            optimizer.apply_gradients(zip([tf.constant(g) for g in grads], variables))

    def make(seed):
        return [tf.Variable(p) for p in initial_params(SHAPES)], official.AM2SGD(0.05, amortization=4, seed=seed)

    variables, optimizer = make(3)
    run(stream, variables, optimizer)
    expected = [v.numpy() for v in variables] + [a.numpy() for a in optimizer.evaluation_weights(variables)]
    variables, optimizer = make(3)
    run(stream[:5], variables, optimizer)
    path = tf.train.Checkpoint(variables=variables, optimizer=optimizer).save(str(tmp_path / "ckpt"))
    variables, optimizer = make(99)  # the checkpoint's seed wins
    tf.train.Checkpoint(variables=variables, optimizer=optimizer).restore(path).assert_existing_objects_matched()
    run(stream[5:], variables, optimizer)
    resumed = [v.numpy() for v in variables] + [a.numpy() for a in optimizer.evaluation_weights(variables)]
    for a, e in zip(resumed, expected):
        np.testing.assert_array_equal(a, e)


@pytest.mark.parametrize("argument, value", [("seed", -1), ("seed", 2**32), ("amortization", 0)])
def test_am2sgd_refuses_bad_hyperparameters_naming_them(argument, value):
    with pytest.raises(ValueError, match=argument):
        official.AM2SGD(**{argument: value})
