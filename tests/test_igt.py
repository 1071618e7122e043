"""IGT's own properties (Arnold et al., 2019) and the output-point mechanism."""

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_momenta as km
from tests.harness import gradient_stream, initial_params, per_variable_fit
from tests.references.dissecting_adam import AdamStarReference, MSSDReference, MSVAGReference
from tests.references.expectigrad import ExpectigradReference
from tests.references.igt import IGTReference, igt_momentum

SHAPES = [(4, 3), (5,)]

# ----------------------------------------------------------------- the method


def test_hand_derived_trajectory():
    """f = ½xᵀdiag(2, 1)x from [1, 1], learning rate 0.1, plain IGT."""
    x = keras.Variable(np.array([1.0, 1.0]))
    optimizer = km.IGT(keras.optimizers.SGD(0.1))
    true_iterates, shifted_points = [], []
    for _ in range(3):
        optimizer.apply([tf.constant([2.0, 1.0], tf.float64) * x.value], [x])
        true_iterates.append(optimizer.evaluation_weights([x])[0].numpy())
        shifted_points.append(x.numpy())
    # The learning rate is stored in float32 (0.1 → 0.100000001…).
    np.testing.assert_allclose(true_iterates, [[0.8, 0.9], [0.64, 0.81], [0.512, 0.729]], rtol=1e-6)
    np.testing.assert_allclose(shifted_points, [[0.6, 0.8], [0.32, 0.63], [0.128, 0.486]], rtol=1e-6)


def test_tail_averaging_momentum():
    optimizer = km.IGT(keras.optimizers.SGD(0.1), tail_fraction=0.25)
    gammas = [float(optimizer.momentum_at(t)) for t in range(1, 5)]
    np.testing.assert_allclose(gammas[:3], [0.0, -0.2898979486, -0.1380711875], rtol=1e-9)
    assert gammas[3] == pytest.approx(0.0, abs=1e-15)  # t(t−1) = (1−c)/c² at t = 4
    clipped = km.IGT(keras.optimizers.SGD(0.1), tail_fraction=0.25, nonnegative_momentum=True)
    assert [float(clipped.momentum_at(t)) for t in (2, 3)] == [0.0, 0.0]
    plain = km.IGT(keras.optimizers.SGD(0.1))
    for t in (1, 2, 10, 1000):
        assert float(plain.momentum_at(t)) == pytest.approx((t - 1) / t, rel=1e-15)
    for c in (0.01, 0.2, 0.5, 0.9):
        for t in range(1, 60):
            value = float(km.IGT(keras.optimizers.SGD(0.1), tail_fraction=c).momentum_at(t))
            assert value == pytest.approx(igt_momentum(t, c), rel=1e-12, abs=1e-15)
            assert -1 < value < 1


def _transport_run(optimizer, hessian, samples, theta0):
    """Train on g(θ, x) = H(θ − x) with one sample per step; return θ and v per step."""
    x = keras.Variable(theta0.copy())
    optimizer.build([x])
    step = tf.function(lambda g: optimizer.apply([g], [x]))
    thetas, estimates = [], []
    for sample in samples:
        step(tf.constant(hessian @ (x.numpy() - sample)))
        thetas.append(optimizer.evaluation_weights([x])[0].numpy())
        estimates.append(optimizer._estimates[0].numpy())
    return np.array(thetas), np.array(estimates)


def test_exact_transport_with_equal_hessians():
    """The estimate is the full gradient at θ of the average sample seen, so θ
    follows full-gradient descent on the running average exactly."""
    rng = np.random.default_rng(0)
    a = rng.normal(size=(5, 5))
    hessian = a @ a.T / 5 + np.eye(5)
    samples = rng.normal(size=(300, 5))
    theta0 = rng.normal(size=5)
    lr = 2.0**-4
    thetas, estimates = _transport_run(km.IGT(keras.optimizers.SGD(lr)), hessian, samples, theta0)
    theta = theta0
    for t in range(len(samples)):
        mean_sample = samples[: t + 1].mean(axis=0)
        full_gradient = hessian @ (theta - mean_sample)
        np.testing.assert_allclose(estimates[t], full_gradient, rtol=1e-9, atol=1e-12)
        theta = theta - lr * full_gradient
        np.testing.assert_allclose(thetas[t], theta, rtol=1e-9, atol=1e-12)


@pytest.mark.parametrize("tail_fraction", [1.0, 0.5, 0.2])
@pytest.mark.parametrize(
    "make_inner",
    [
        lambda: keras.optimizers.SGD(2.0**-5, momentum=0.875),
        lambda: keras.optimizers.SGD(2.0**-5, momentum=0.875, nesterov=True),
        lambda: keras.optimizers.Adam(2.0**-5),
    ],
    ids=["heavy_ball", "nesterov", "adam"],
)
def test_deterministic_quadratic_reproduces_inner_optimizer(make_inner, tail_fraction):
    rng = np.random.default_rng(1)
    a = rng.normal(size=(4, 4))
    hessian, optimum = a @ a.T / 4 + 0.5 * np.eye(4), rng.normal(size=4)
    start = rng.normal(size=4)
    samples = np.tile(optimum, (150, 1))
    igt_thetas, _ = _transport_run(km.IGT(make_inner(), tail_fraction), hessian, samples, start)
    x = keras.Variable(start.copy())
    inner = make_inner()
    plain = []
    for _ in samples:
        inner.apply([tf.constant(hessian @ (x.numpy() - optimum))], [x])
        plain.append(x.numpy())
    np.testing.assert_allclose(igt_thetas, np.array(plain), rtol=1e-8, atol=1e-10)


def test_shifted_point_is_accurate_over_100k_float32_steps():
    """Δθ comes from a zeroed scratch, not θ_new − θ_old, whose rounding error
    the shift multiplier (≈ t) would amplify."""
    rng = np.random.default_rng(2)
    steps, dim, lr = 100_000, 8, 2.0**-6
    diagonal = np.linspace(0.5, 2.0, dim)
    noise = rng.normal(scale=0.3, size=(steps, dim)).astype(np.float32)
    start = np.ones(dim, np.float32)

    x = keras.Variable(start, dtype="float32")
    optimizer = km.IGT(keras.optimizers.SGD(lr))
    optimizer.build([x])
    h = tf.constant(diagonal, tf.float32)

    @tf.function(jit_compile=True)
    def run(chunk):
        def body(i):
            optimizer.apply([h * x.value + chunk[i]], [x])
            return (i + 1,)

        tf.while_loop(lambda i: i < tf.shape(chunk)[0], body, (0,))

    for begin in range(0, steps, 20_000):
        run(tf.constant(noise[begin : begin + 20_000]))

    reference = IGTReference(inner=("sgd", {}))
    params = [start.astype(np.float64)]
    for t in range(steps):
        params = reference.step(params, [diagonal * params[0] + noise[t]], lr)
    relative = np.linalg.norm(x.numpy() - params[0]) / np.linalg.norm(params[0])
    assert relative < 1e-5, relative


def test_ita_converges_with_negative_early_momentum():
    for nonnegative in (False, True):
        x = keras.Variable(np.ones(3))
        optimizer = km.IGT(keras.optimizers.SGD(0.1), tail_fraction=0.2, nonnegative_momentum=nonnegative)
        for _ in range(200):
            optimizer.apply([tf.constant(2.0, tf.float64) * x.value], [x])
        assert np.all(np.abs(optimizer.evaluation_weights([x])[0].numpy()) < 1e-3)
        assert np.all(np.isfinite(x.numpy()))


# ------------------------------------------------------- weight decay, inners


# Exact in float32, where Keras's Adam rounds β₁ and β₂.
BETAS = {"beta_1": 0.875, "beta_2": 1 - 2.0**-10}


def test_inner_weight_decay_acts_on_the_true_iterate():
    results = []
    for make in (
        lambda: km.IGT(keras.optimizers.AdamW(2.0**-5, weight_decay=0.125, **BETAS)),
        lambda: km.IGT(keras.optimizers.Adam(2.0**-5, **BETAS), weight_decay=0.125),
    ):
        x = keras.Variable(np.linspace(-1.0, 1.0, 6))
        optimizer = make()
        for t in range(20):
            optimizer.apply([tf.constant(np.sin(np.arange(6.0) + t))], [x])
        results.append((x.numpy(), optimizer.evaluation_weights([x])[0].numpy()))
    np.testing.assert_array_equal(results[0][0], results[1][0])
    np.testing.assert_array_equal(results[0][1], results[1][1])
    reference = IGTReference(inner=("adam", {**BETAS, "epsilon": 1e-7}))
    params = [np.linspace(-1.0, 1.0, 6)]
    for t in range(20):
        reference.apply_weight_decay(params, 2.0**-5, 0.125, [True])
        params = reference.step(params, [np.sin(np.arange(6.0) + t)], 2.0**-5)
    np.testing.assert_allclose(results[0][1], reference.output_point()[0], rtol=1e-10)


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: km.IGT(keras.optimizers.Lamb()), "Lamb is not supported"),
        (lambda: km.IGT(keras.optimizers.Adafactor()), "Adafactor is not supported"),
        (lambda: km.IGT(keras.optimizers.Ftrl()), "Ftrl is not supported"),
        (lambda: km.IGT("sgd"), "must be a Keras optimizer"),
        (lambda: km.IGT(keras.optimizers.SGD(clipnorm=1.0)), "`clipnorm` is set on the inner"),
        (
            lambda: km.IGT(keras.optimizers.SGD(gradient_accumulation_steps=2)),
            "`gradient_accumulation_steps` is set on the inner",
        ),
        (lambda: km.IGT(keras.optimizers.AdamW(), weight_decay=0.1), "set it on one of them"),
        (lambda: km.IGT(keras.optimizers.SGD(), tail_fraction=10), "reciprocal"),
        (lambda: km.IGT(keras.optimizers.SGD(), tail_fraction=True), "`tail_fraction` must be a real"),
        (lambda: km.IGT(keras.optimizers.SGD(), tail_fraction=1e-50), "0.0 in float32"),
        (lambda: km.IGT(keras.optimizers.SGD(), use_ema=True), "evaluation_weights"),
        (lambda: km.IGT(keras.optimizers.SGD(0.1), learning_rate=0.5), "Set it there"),
        (lambda: km.IGT(km.MSVAG(variance="minibatch")), "per-example statistics"),
        (lambda: km.IGT(km.AM1SGD()), "AM1SGD is not supported"),
    ],
)
def test_refusals_say_what_to_do(make, message):
    with pytest.raises(ValueError, match=message):
        make()


class _BackendSGD(keras.optimizers.SGD):
    """Like the PyTorch backend's SGD: a subclass with Keras's own `update_step`."""


class _ValueDependentSGD(keras.optimizers.SGD):
    def update_step(self, gradient, variable, learning_rate):
        self.assign(variable, variable * 0.5)


def test_inner_optimizers_are_matched_by_their_update_step():
    # Accepted (the PyTorch backend's SGD once was refused as "SGD is not
    # supported ... Supported: SGD"), and the same steps as Keras's SGD.
    variables = [keras.Variable(np.linspace(-1.0, 1.0, 5))]
    results = []
    for inner_class in (keras.optimizers.SGD, _BackendSGD):
        values = [keras.Variable(v) for v in variables]
        optimizer = km.IGT(inner_class(0.25, momentum=0.5), tail_fraction=0.5)
        for t in range(6):
            optimizer.apply([np.cos(np.arange(5.0) + t)], values)
        results.append(values[0].numpy())
    np.testing.assert_array_equal(results[0], results[1])
    with pytest.raises(ValueError, match="_ValueDependentSGD is not supported"):
        km.IGT(_ValueDependentSGD())


def test_built_inner_optimizer_is_refused():
    inner = keras.optimizers.SGD()
    inner.build([keras.Variable(np.zeros(2))])
    with pytest.raises(ValueError, match="already been built"):
        km.IGT(inner)


def test_numpy_tail_fraction_is_accepted():
    optimizer = km.IGT(keras.optimizers.SGD(), tail_fraction=np.float32(0.25))
    assert optimizer.tail_fraction == pytest.approx(0.25)
    assert km.IGT.from_config(optimizer.get_config()).tail_fraction == optimizer.tail_fraction


def test_one_inner_optimizer_cannot_serve_two_igts():
    inner = keras.optimizers.SGD(0.1)
    first = km.IGT(inner)  # noqa: F841 - alive while the second is made
    with pytest.raises(ValueError, match="already belongs to another IGT"):
        km.IGT(inner)


@pytest.mark.parametrize(
    "make_inner, make_reference",
    [
        (lambda: km.Expectigrad(2.0**-5, beta=0.875), lambda: ExpectigradReference(beta=0.875)),
        (lambda: km.MSSD(2.0**-5, momentum=0.875), lambda: MSSDReference(momentum=0.875)),
        (lambda: km.MSVAG(2.0**-5, momentum=0.875), lambda: MSVAGReference(momentum=0.875)),
        (lambda: km.AdamStar(2.0**-5, momentum=0.875), lambda: AdamStarReference(momentum=0.875)),
    ],
    ids=["expectigrad", "mssd", "msvag", "adamstar"],
)
def test_keras_momenta_inner_optimizers_follow_the_reference(make_inner, make_reference):
    """The package's optimizers whose step does not read the parameters work
    inside IGT, as README says."""
    stream, params = gradient_stream(SHAPES, 60), initial_params(SHAPES)
    variables = [keras.Variable(p) for p in params]
    optimizer = km.IGT(make_inner(), tail_fraction=0.5)
    optimizer.build(variables)
    step = tf.function(lambda g: optimizer.apply(g, variables))
    reference = IGTReference(inner=make_reference(), tail_fraction=0.5)
    for grads in stream:
        step([tf.constant(g) for g in grads])
        params = reference.step(params, grads, 2.0**-5)
        for v, p in zip(variables, params):
            np.testing.assert_allclose(v.numpy(), p, rtol=1e-10, atol=1e-13)


# ------------------------------------------------------------- output point


def _data(n=64, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, x @ np.array([[1.0], [-2.0], [0.5]]) + 0.1 * rng.normal(size=(n, 1))


def _model(strategy=None, jit_compile=False, optimizer=None):
    """A linear model; `optimizer` is a factory, called inside the strategy's scope."""
    with (strategy or tf.distribute.get_strategy()).scope():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(
            optimizer=optimizer() if optimizer else km.IGT(keras.optimizers.SGD(2.0**-4, momentum=0.875), 0.5),
            loss="mse",
            jit_compile=jit_compile,
        )
    return model


class _Record(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.weights = []

    def on_epoch_end(self, epoch, logs=None):
        self.weights.append([w.copy() for w in self.model.get_weights()])


def _true_iterate(model):
    return [v.numpy() for v in model.optimizer.evaluation_weights(model.trainable_variables)]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_swap_around_evaluation_keeps_training_unchanged(jit_compile):
    keras.config.set_floatx("float64")
    x, y = _data()
    plain = _model(jit_compile=jit_compile)
    plain.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)

    swapped = _model(jit_compile=jit_compile)
    losses = []

    class CheckEvaluation(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            self.theta = _true_iterate(self.model)

        def on_test_begin(self, logs=None):
            # Runs after SwapEvaluationWeights: the model holds θ now.
            held = [v.numpy() for v in self.model.trainable_variables]
            for a, b in zip(held, self.theta):
                np.testing.assert_array_equal(a, b)
            losses.append(float(np.mean((x @ held[0] + held[1] - y) ** 2)))

    history = swapped.fit(
        x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(x, y),
        callbacks=[km.callbacks.SwapEvaluationWeights(), CheckEvaluation()],
    )
    np.testing.assert_allclose(history.history["val_loss"], losses, rtol=1e-10)
    for a, b in zip(swapped.get_weights(), plain.get_weights()):
        np.testing.assert_array_equal(a, b)


def test_fit_ends_at_the_true_iterate_and_keeps_its_state():
    keras.config.set_floatx("float64")
    x, y = _data()
    model = _model()
    recorder = _Record()
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0, callbacks=[recorder])
    shifted = recorder.weights[-1]
    theta = [a.numpy() for a in model.optimizer.evaluation_weights(model.trainable_variables)]
    for a, b in zip(model.get_weights(), theta):
        np.testing.assert_array_equal(a, b)  # finalize put θ into the model
    assert not np.allclose(shifted[0], theta[0])  # it was shifted before
    model.optimizer.restore_training_weights(model.trainable_variables)
    for a, b in zip(model.get_weights(), shifted):
        np.testing.assert_array_equal(a, b)  # the shifted point was kept


def _per_variable_run(optimizer, references, stream, params, active_from):
    """Apply `stream` with variable i getting gradients from step
    `active_from[i]` (None before); each variable's reference starts then."""
    variables = [keras.Variable(p) for p in params]
    expected = [np.array(p) for p in params]
    for t, grads in enumerate(stream):
        given = [g if t >= start else None for g, start in zip(grads, active_from)]
        optimizer.apply([None if g is None else tf.constant(g) for g in given], variables)
        for i, g in enumerate(given):
            if g is not None:
                expected[i] = references[i].step([expected[i]], [g], 2.0**-5)[0]
        for v, e in zip(variables, expected):
            np.testing.assert_allclose(v.numpy(), e, rtol=1e-10, atol=1e-13, err_msg=f"step {t}")
    return variables


@pytest.mark.parametrize("tail_fraction", [1.0, 0.25])
def test_a_variable_whose_first_gradient_comes_late_starts_its_run_then(tail_fraction):
    """γ counts the variable's own updates, and θ starts at its value then."""
    stream, params = gradient_stream(SHAPES, 30, seed=3), initial_params(SHAPES)
    optimizer = km.IGT(keras.optimizers.SGD(2.0**-5, momentum=0.875), tail_fraction)
    references = [
        IGTReference(inner=("sgd", {"momentum": 0.875}), tail_fraction=tail_fraction)
        for _ in SHAPES
    ]
    variables = _per_variable_run(optimizer, references, stream, params, active_from=[0, 9])
    for answer, reference in zip(optimizer.evaluation_weights(variables), references):
        np.testing.assert_allclose(answer.numpy(), reference.output_point()[0], rtol=1e-10)


def test_assigning_one_variable_between_fits_restarts_only_its_run():
    keras.config.set_floatx("float64")
    x, y = _data()
    model = _model()
    params = [np.asarray(w, np.float64) for w in model.get_weights()]
    references = [IGTReference(inner=("sgd", {"momentum": 0.875}), tail_fraction=0.5) for _ in params]
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    kernel = np.array([[0.5], [-1.0], [0.25]])
    model.trainable_variables[0].assign(kernel)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    params = per_variable_fit(references, params, x, y, 2, 2.0**-4)
    references[0].restart()
    # The kernel restarts at its new value; the bias goes on from its shifted
    # point, its first gradient taken where the model held it (at θ).
    answer = [kernel, references[1].output_point()[0]]
    per_variable_fit(references, [kernel, params[1]], x, y, 1, 2.0**-4, first_gradient_at=answer)
    expected = [r.output_point()[0] for r in references]
    for a, b in zip(model.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_swap_on_epoch_lets_checkpoints_save_the_true_iterate(tmp_path):
    keras.config.set_floatx("float64")
    x, y = _data()
    model = _model()
    recorder = _Record()
    thetas = []

    class TrueIterate(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            thetas.append([t.numpy() for t in self.model.optimizer._true_params])

    path = tmp_path / "epoch{epoch}.weights.h5"
    model.fit(
        x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
        callbacks=[
            TrueIterate(),
            km.callbacks.SwapEvaluationWeights(swap_on_epoch=True),
            keras.callbacks.ModelCheckpoint(str(path), save_weights_only=True),
            recorder,
        ],
    )
    for epoch, theta in enumerate(thetas, start=1):
        for a, b in zip(recorder.weights[epoch - 1], theta):
            np.testing.assert_array_equal(a, b)
        restored = _model()
        restored.load_weights(str(tmp_path / f"epoch{epoch}.weights.h5"))
        for a, b in zip(restored.get_weights(), theta):
            np.testing.assert_array_equal(a, b)


def test_swap_under_mirrored_strategy_and_loss_scaling(mirrored_strategy):
    strategy = mirrored_strategy
    x, y = _data()
    keras.mixed_precision.set_global_policy("mixed_float16")
    model = _model(strategy, optimizer=lambda: km.IGT(keras.optimizers.SGD(2.0**-4), 0.5))
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    igt = model.optimizer.inner_optimizer
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)
    model.train_on_batch(x[:16], y[:16])  # no finalisation: the model holds the shifted point
    training = [w.copy() for w in model.get_weights()]
    theta = [t.numpy() for t in igt._true_params]
    assert not np.allclose(training[0], theta[0])
    seen = []

    class Look(keras.callbacks.Callback):
        def on_test_begin(self, logs=None):
            seen.append([w.copy() for w in self.model.get_weights()])

    model.evaluate(x, y, verbose=0, callbacks=[km.callbacks.SwapEvaluationWeights(), Look()])
    for a, b in zip(seen[0], theta):
        np.testing.assert_allclose(a, b, rtol=1e-3)  # float16 layer compute, float32 state
    for a, b in zip(model.get_weights(), training):
        np.testing.assert_array_equal(a, b)
    for variable in model.weights + igt.variables:
        replicas = strategy.experimental_local_results(variable.value)
        np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())


def test_optimizers_without_output_point_are_untouched():
    x, y = _data()
    model = _model(optimizer=lambda: km.Expectigrad(1e-2))
    model.fit(x, y, epochs=1, verbose=0)
    before = [w.copy() for w in model.get_weights()]
    values = model.optimizer.evaluation_weights(model.trainable_variables)
    for a, b in zip(values, before):
        np.testing.assert_array_equal(a.numpy(), b)
    model.evaluate(x, y, verbose=0, callbacks=[km.callbacks.SwapEvaluationWeights()])
    model.predict(x, verbose=0, callbacks=[km.callbacks.SwapEvaluationWeights()])
    for a, b in zip(model.get_weights(), before):
        np.testing.assert_array_equal(a, b)
