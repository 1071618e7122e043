"""M-SSD, M-SVAG and ADAM*: the paper's own properties, beyond the conformance suite."""

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_momenta as km
from tests.references.dissecting_adam import MSVAGReference, kappa

LEARNING_RATE = 2.0**-6  # exact in Keras's float32 learning-rate variable
VARIANCE_ADAPTED = [
    pytest.param(km.MSVAG, {}, id="msvag"),
    pytest.param(km.MSVAG, {"released_code": True}, id="msvag-released_code"),
    pytest.param(km.AdamStar, {}, id="adamstar"),
]


def run(optimizer, gradients, initial, dtype="float64"):
    """Apply `gradients` one by one; return the variable after each step."""
    variable = keras.Variable(np.asarray(initial, np.float64), dtype=dtype)
    trajectory = []
    for g in gradients:
        optimizer.apply([tf.constant(g, dtype=dtype)], [variable])
        trajectory.append(variable.numpy().astype(np.float64))
    return trajectory


# ------------------------------------------------------------------ M-SVAG


@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-15), ("float32", 1e-7)])
@pytest.mark.parametrize("released_code", [False, True])
def test_msvag_first_step_is_alpha_g(dtype, rtol, released_code):
    # κ(μ, 1) = 1 and one gradient has no variance: γ = 1. The released
    # code's 1/(1 − ρ) = 10⁴ at t = 1 must not amplify rounding into γ.
    assert kappa(0.9, 1) == pytest.approx(1.0, rel=1e-15)
    g = np.array([0.3, -7.0, 1e-3, 0.0, 123.0])
    (x,) = run(km.MSVAG(LEARNING_RATE, released_code=released_code), [g], np.zeros(5), dtype)
    np.testing.assert_allclose(-x, LEARNING_RATE * g.astype(dtype), rtol=rtol, atol=0)


@pytest.mark.parametrize("variance", ["moving_average", "minibatch"])
def test_msvag_constant_gradient_moves_alpha_g_every_step(variance):
    g = np.array([0.5, -2.0, 1e-4])
    optimizer = km.MSVAG(LEARNING_RATE, momentum=0.9, variance=variance)
    variable = keras.Variable(np.zeros(3))
    previous = variable.numpy()
    for t in range(1, 51):
        if variance == "minibatch":
            # Every example has the same gradient: B·g², no variance.
            optimizer.add_minibatch_statistics([tf.constant(16 * g**2)], 16, [variable])
        optimizer.apply([tf.constant(g)], [variable])
        step = previous - variable.numpy()
        previous = variable.numpy()
        # The mini-batch form steps along the momentum sum Σ μˢ·g.
        scale = 1.0 if variance == "moving_average" else (1 - 0.9**t) / (1 - 0.9)
        np.testing.assert_allclose(step, LEARNING_RATE * scale * g, rtol=1e-13, err_msg=f"t={t}")
    if variance == "moving_average":
        np.testing.assert_array_equal(optimizer._variances[0].numpy(), 0.0)


def alternating_steps(optimizer, steps):
    """Steps on coordinate 0 with gradients +1, −1, +1, ... (mean 0, pure
    noise) and on coordinate 1 with gradient 1; returns the last step."""
    variable = keras.Variable(np.zeros(2))
    optimizer.build([variable])

    @tf.function
    def step(t):
        sign = 1.0 - 2.0 * tf.cast(t % 2 == 0, tf.float64)
        optimizer.apply([tf.stack([sign, tf.constant(1.0, tf.float64)])], [variable])

    for t in range(1, steps):
        step(tf.constant(t))
    before = variable.numpy()
    step(tf.constant(steps))
    return before - variable.numpy()


@pytest.mark.parametrize("momentum", [0.9, 0.99])
def test_msvag_alternating_sign_gets_gamma_to_zero(momentum):
    optimizer = km.MSVAG(LEARNING_RATE, momentum=momentum)
    step = alternating_steps(optimizer, 2000)
    gamma = step / (LEARNING_RATE * optimizer._momentums[0].numpy())
    assert gamma[1] == pytest.approx(1.0, rel=1e-12)
    # In the long run m = ±a with a = (1 − μ)/(1 + μ), v = 1 and κ = a, so
    # γ = a/(a + 1 − a²): 0.050 for μ = 0.9, 0.0050 for μ = 0.99.
    a = (1 - momentum) / (1 + momentum)
    assert gamma[0] == pytest.approx(a / (a + 1 - a**2), rel=1e-6)
    assert gamma[0] < 1.01 * a


@pytest.mark.parametrize("cls, kwargs", VARIANCE_ADAPTED)
@pytest.mark.parametrize("dtype", ["float16", "float32", "float64"])
def test_zero_momentum_term_gives_zero_update_and_no_nan(cls, kwargs, dtype):
    optimizer = cls(LEARNING_RATE, momentum=0.5, **kwargs)
    variable = keras.Variable(np.ones(2), dtype=dtype)
    # Coordinate 1 never sees a gradient: m = v = 0 (0/0 in η²).
    for g in ([1.0, 0.0], [-3.0, 0.0]):
        optimizer.apply([tf.constant(g, dtype=dtype)], [variable])
    assert variable.numpy()[1] == 1.0
    # Coordinate 0 with m = 0 and v − m² > 0 (η² = ∞).
    assert optimizer._variances[0].numpy()[0] > 0
    optimizer._momentums[0].assign(np.zeros(2))
    before = variable.numpy()
    optimizer.apply([tf.zeros(2, dtype=dtype)], [variable])
    np.testing.assert_array_equal(variable.numpy(), before)
    for state in optimizer.variables:
        assert np.all(np.isfinite(state.numpy()))


def test_zero_momentum_term_gives_zero_update_minibatch():
    for cls in (km.MSVAG, km.AdamStar):
        optimizer = cls(LEARNING_RATE, momentum=0.5, variance="minibatch")
        variable = keras.Variable(np.ones(2))
        for g in ([1.0, 0.0], [-0.5, 0.0]):  # m = 0.5·1 − 0.5 = 0
            optimizer.add_minibatch_statistics([tf.constant([4.0, 0.0])], 2, [variable])
            before = variable.numpy()
            optimizer.apply([tf.constant(g)], [variable])
        np.testing.assert_array_equal(variable.numpy(), before)
        assert all(np.all(np.isfinite(v.numpy())) for v in optimizer.variables)


def test_released_code_differs_from_algorithm_2_by_one_over_one_minus_kappa():
    gradients = [np.array([1.0, 2.0]), np.array([3.0, -1.0])]
    paper = run(km.MSVAG(LEARNING_RATE), gradients, np.zeros(2))
    released = run(km.MSVAG(LEARNING_RATE, released_code=True), gradients, np.zeros(2))
    np.testing.assert_array_equal(paper[0], released[0])  # t = 1: no variance yet
    # t = 2, μ = 0.9: m = (0.9·g₁ + g₂)/1.9, v − m² as for two weighted samples.
    m = (0.9 * gradients[0] + gradients[1]) / 1.9
    variance = (0.9 * gradients[0] ** 2 + gradients[1] ** 2) / 1.9 - m**2
    k = kappa(0.9, 2)
    for trajectory, eta2 in ((paper, k * variance / m**2), (released, k / (1 - k) * variance / m**2)):
        np.testing.assert_allclose(trajectory[0] - trajectory[1], LEARNING_RATE * m / (1 + eta2), rtol=1e-12)


def test_state_is_the_bias_corrected_average_and_variance():
    """The stored m and v − m² are Algorithm 2's m̃/(1 − μᵗ) and ṽ/(1 − μᵗ) − m²."""
    rng = np.random.default_rng(0)
    gradients = rng.normal(size=(40, 5)) * rng.choice([0.1, 10.0], size=(40, 5))
    optimizer = km.MSVAG(LEARNING_RATE)
    reference = MSVAGReference()
    x = np.zeros(5)
    run(optimizer, gradients, x)
    for g in gradients:
        x = reference.step([x], [g], LEARNING_RATE)[0]
    bias = 1 - 0.9**40
    m, v = reference.m[0] / bias, reference.v[0] / bias
    np.testing.assert_allclose(optimizer._momentums[0].numpy(), m, rtol=1e-12)
    np.testing.assert_allclose(optimizer._variances[0].numpy(), v - m**2, rtol=1e-10)


def test_svag_with_moving_averages_is_sgd():
    gradients = np.random.default_rng(1).normal(size=(10, 4))
    svag = run(km.MSVAG(LEARNING_RATE, momentum=0.0), gradients, np.zeros(4))
    np.testing.assert_allclose(svag[-1], -LEARNING_RATE * gradients.sum(axis=0), rtol=1e-14)


# ------------------------------------------------------------ ADAM*, M-SSD


def test_adamstar_first_step_is_alpha_sign_g():
    g = np.array([0.3, -7.0, 1e-30, 0.0])
    (x,) = run(km.AdamStar(LEARNING_RATE), [g], np.zeros(4))
    np.testing.assert_allclose(x, -LEARNING_RATE * np.sign(g), rtol=1e-15)


def test_adamstar_alternating_sign_gets_gamma_to_sqrt_of_msvag_gamma():
    step = alternating_steps(km.AdamStar(LEARNING_RATE, momentum=0.9), 2000)
    a = 0.1 / 1.9
    np.testing.assert_allclose(np.abs(step) / LEARNING_RATE, [np.sqrt(a / (a + 1 - a**2)), 1.0], rtol=1e-6)


@pytest.mark.parametrize("momentum", [0.0, 0.9])
def test_mssd_moves_every_coordinate_by_alpha(momentum):
    rng = np.random.default_rng(2)
    gradients = rng.normal(size=(20, 6)) * np.array([1e-6, 1e-3, 1, 1e3, 1e6, 0.0])
    steps = np.diff([np.zeros(6)] + run(km.MSSD(LEARNING_RATE, momentum=momentum), gradients, np.zeros(6)), axis=0)
    np.testing.assert_array_equal(np.abs(steps[:, :5]), LEARNING_RATE)
    np.testing.assert_array_equal(steps[:, 5], 0.0)  # sign(0) = 0


def test_state_follows_hyperparameters():
    variables = [keras.Variable(np.zeros((2, 3)))]

    def slot_names(cls, **kwargs):
        optimizer = cls(**kwargs)
        optimizer.build(variables)
        return sorted(
            v.name.split("_", 1)[-1] for v in optimizer.variables[2:]
            if "gradient_accumulator" not in v.name  # Keras's own
        )

    assert slot_names(km.MSSD) == ["momentum"]
    assert slot_names(km.MSSD, momentum=0.0) == []
    assert slot_names(km.MSVAG) == ["mean", "variance"]
    assert slot_names(km.AdamStar, variance="minibatch") == [
        "example_count", "momentum", "square_sum", "step", "variance",
    ]
    # Accumulating, the last call's share is kept too (a skipped step drops it).
    assert slot_names(km.AdamStar, variance="minibatch", gradient_accumulation_steps=2) == [
        "example_count", "last_example_count", "last_square_sum", "momentum", "square_sum",
        "step", "variance",
    ]


def test_registry_and_get():
    for name, cls in (("mssd", km.MSSD), ("msvag", km.MSVAG), ("adamstar", km.AdamStar)):
        assert km.OPTIMIZERS[name] is cls
        assert isinstance(km.get(name.upper(), momentum=0.5), cls)


# ------------------------------------------------------- mini-batch variance


L2 = 2.0**-7  # Keras rounds the regularization factor to float32


def small_model():
    keras.utils.set_random_seed(0)
    return keras.Sequential([
        keras.Input((3,)),
        keras.layers.Dense(4, activation="tanh", kernel_regularizer=keras.regularizers.L2(L2)),
        keras.layers.Dense(2),
    ])


def per_example_gradients(weights, x, y, sample_weight):
    """Gradients of wₖ·mean((f(xₖ) − yₖ)²) + λ·‖W₁‖² for each example, in NumPy."""
    w1, b1, w2, b2 = weights
    hidden = np.tanh(x @ w1 + b1)
    prediction = hidden @ w2 + b2
    # d/dŷ of wₖ·mean over the 2 outputs of (ŷ − y)².
    d_prediction = sample_weight[:, None] * (prediction - y)
    d_pre_hidden = (d_prediction @ w2.T) * (1 - hidden**2)
    losses = sample_weight * np.mean((prediction - y) ** 2, axis=1) + L2 * np.sum(w1**2)
    return losses, [
        np.einsum("ki,kj->kij", x, d_pre_hidden) + 2 * L2 * w1,
        d_pre_hidden,
        np.einsum("ki,kj->kij", hidden, d_prediction),
        d_prediction,
    ]


@pytest.mark.parametrize("jit_compile", [False, True])
def test_minibatch_estimate_equals_numpy_per_example_computation(jit_compile):
    keras.config.set_floatx("float64")
    rng = np.random.default_rng(3)
    x, y = rng.normal(size=(8, 3)), rng.normal(size=(8, 2))
    sample_weight = rng.uniform(0.5, 2.0, size=8)
    model = km.MinibatchVarianceModel(small_model())
    weights = model.get_weights()
    model.compile(optimizer=km.MSVAG(LEARNING_RATE, variance="minibatch"), loss="mse", jit_compile=jit_compile)
    history = model.fit(x, y, sample_weight=sample_weight, batch_size=8, epochs=1, verbose=0)

    losses, per_example = per_example_gradients(weights, x, y, sample_weight)
    assert history.history["loss"][0] == pytest.approx(np.mean(losses), rel=1e-12)
    optimizer = model.optimizer
    for i, g_k in enumerate(per_example):
        g = g_k.mean(axis=0)
        s_hat = np.sum((g_k - g) ** 2, axis=0) / (8 * (8 - 1))  # Eq. 44, unbiased
        np.testing.assert_allclose(optimizer._momentums[i].numpy(), g, rtol=1e-10)
        # The optimizer subtracts g² from the mean square (1/B)·Σₖ∇ℓₖ²: where
        # the examples barely differ, a few roundings of the mean square remain.
        mean_square = np.mean(g_k**2, axis=0)
        np.testing.assert_allclose(
            optimizer._variances[i].numpy(), s_hat, rtol=1e-10, atol=1e-14 * mean_square.max()
        )
        # Handed over and consumed by the update (a count of 0 marks it used).
        assert optimizer._square_sums[i].numpy().max() > 0.0
        assert optimizer._example_counts[i].numpy() == 0.0
        s_bar = optimizer._variances[i].numpy()
        step = LEARNING_RATE * g**2 / (g**2 + s_bar) * g
        np.testing.assert_allclose(model.get_weights()[i], weights[i] - step, rtol=1e-13)


def test_minibatch_needs_statistics():
    model = small_model()
    model.compile(optimizer=km.MSVAG(variance="minibatch"), loss="mse")
    with pytest.raises(ValueError, match="MinibatchVarianceModel"):
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)
    optimizer = km.AdamStar(variance="minibatch")
    with pytest.raises(ValueError, match="add_minibatch_statistics"):
        optimizer.apply([tf.zeros(2)], [keras.Variable(np.zeros(2))])
    with pytest.raises(ValueError, match="variance='minibatch'"):
        km.MSVAG().add_minibatch_statistics([tf.zeros(2)], 4, [keras.Variable(np.zeros(2))])


def test_every_step_needs_its_own_statistics():
    """Statistics given once do not carry over to later steps, eager or traced."""
    variables = [keras.Variable(np.zeros(2)), keras.Variable(np.zeros((2, 3)))]
    optimizer = km.MSVAG(variance="minibatch")
    grads = [tf.ones(2, "float64"), tf.ones((2, 3), "float64")]
    sums = [tf.ones(2, "float64") * 8, tf.ones((2, 3), "float64") * 8]
    optimizer.add_minibatch_statistics(sums, 4, variables)
    optimizer.apply(grads, variables)
    with pytest.raises(ValueError, match="add_minibatch_statistics"):
        optimizer.apply(grads, variables)
    # Statistics added eagerly do not serve a traced step, which would run
    # without them every time after the first.
    optimizer.add_minibatch_statistics(sums, 4, variables)
    with pytest.raises(ValueError, match="same `tf.function`"):
        tf.function(lambda: optimizer.apply(grads, variables))()

    @tf.function
    def step():
        optimizer.add_minibatch_statistics(sums, 4, variables)
        optimizer.apply(grads, variables)

    step()
    step()
    assert int(optimizer.iterations.numpy()) == 3


def test_statistics_must_match_the_variables():
    variables = [keras.Variable(np.zeros(2)), keras.Variable(np.zeros((2, 3)))]
    optimizer = km.MSVAG(variance="minibatch")
    with pytest.raises(ValueError, match="one entry .* 2 trainable variables; got 1"):
        optimizer.add_minibatch_statistics([tf.ones(2, "float64")], 4, variables)
    with pytest.raises(ValueError, match=r"shape \(2, 3\); got \(3, 2\)"):
        optimizer.add_minibatch_statistics(
            [tf.ones(2, "float64"), tf.ones((3, 2), "float64")], 4, variables
        )


@pytest.mark.parametrize("traced", [False, True])
def test_custom_loop_drops_the_statistics_of_a_skipped_step(traced):
    """With a LossScaleOptimizer, the statistics of a step it skips (non-finite
    gradients) are not used by the next step."""
    sums = tf.constant([8.0, 3.0])
    finite, infinite = tf.constant([1.0, -2.0]), tf.constant([np.inf, 1.0])

    def run(batches):
        variable = keras.Variable(np.zeros(2, "float32"))
        optimizer = keras.optimizers.LossScaleOptimizer(km.MSVAG(variance="minibatch"))
        optimizer.build([variable])

        def step(gradient, square_sum):
            # Gradients of the scaled loss; the statistics are of the plain one.
            optimizer.inner_optimizer.add_minibatch_statistics([square_sum], 4, [variable])
            optimizer.apply([optimizer.scale_loss(gradient)], [variable])

        step = tf.function(step) if traced else step
        for gradient, square_sum in batches:
            step(gradient, square_sum)
        return optimizer.inner_optimizer, variable

    skipped, variable = run([(infinite, sums * np.inf), (finite, sums)])
    clean, clean_variable = run([(finite, sums)])
    assert int(skipped.iterations.numpy()) == 1
    np.testing.assert_array_equal(variable.numpy(), clean_variable.numpy())
    np.testing.assert_array_equal(skipped._variances[0].numpy(), clean._variances[0].numpy())


@pytest.mark.parametrize(
    "layer, optimizer, loss, message",
    [
        (None, lambda: keras.optimizers.SGD(), "mse", "variance='minibatch'"),
        (None, lambda: km.MSVAG(), "mse", "variance='minibatch'"),
        (lambda: keras.layers.Dropout(0.5), None, "mse", "Dropout"),
        (lambda: keras.layers.GaussianNoise(0.1), None, "mse", "GaussianNoise"),
        (lambda: keras.layers.BatchNormalization(), None, "mse", "BatchNormalization"),
        (None, None, keras.losses.MeanSquaredError(reduction="sum"), "sum_over_batch_size"),
    ],
)
def test_minibatch_model_refuses_what_it_cannot_compute(layer, optimizer, loss, message):
    layers = [keras.Input((3,)), keras.layers.Dense(2)] + ([layer()] if layer else [])
    model = km.MinibatchVarianceModel(keras.Sequential(layers))
    optimizer = optimizer() if optimizer else km.MSVAG(variance="minibatch")
    model.compile(optimizer=optimizer, loss=loss)
    with pytest.raises(ValueError, match=message):
        model.fit(np.zeros((4, 3)), np.zeros((4, 2)), verbose=0)


def test_minibatch_model_saves_and_predicts_like_its_inner_model(tmp_path):
    inner = small_model()
    model = km.MinibatchVarianceModel(inner)
    model.compile(optimizer=km.AdamStar(variance="minibatch"), loss="mse")
    x = np.random.default_rng(4).normal(size=(16, 3)).astype("float32")
    model.fit(x, np.zeros((16, 2)), batch_size=8, verbose=0)
    np.testing.assert_array_equal(model.predict(x, verbose=0), inner.predict(x, verbose=0))
    model.save(tmp_path / "model.keras")
    restored = keras.models.load_model(tmp_path / "model.keras")
    assert type(restored) is km.MinibatchVarianceModel and type(restored.optimizer) is km.AdamStar
    np.testing.assert_array_equal(restored.predict(x, verbose=0), model.predict(x, verbose=0))


def test_minibatch_statistics_of_a_skipped_mixed_precision_step_are_dropped():
    # Under mixed_float16 the scaled gradient of the first batch overflows
    # float16: LossScaleOptimizer skips the step, and its (infinite)
    # statistics must not reach the next step.
    keras.mixed_precision.set_global_policy("mixed_float16")
    x = np.concatenate([np.full((4, 2), 1e4), np.random.default_rng(5).normal(size=(4, 2))])
    y = np.zeros((8, 1))

    def train(x, y):
        keras.utils.set_random_seed(0)
        model = km.MinibatchVarianceModel(keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)]))
        model.compile(optimizer=km.MSVAG(variance="minibatch"), loss="mse")
        model.fit(x, y, batch_size=4, shuffle=False, verbose=0)
        return model

    model = train(x, y)
    inner = model.optimizer.inner_optimizer
    assert int(inner.iterations.numpy()) == 1  # the first step was skipped
    clean = train(x[4:], y[4:])
    for a, b in zip(inner.variables, clean.optimizer.inner_optimizer.variables):
        if "statistics_step" not in a.path:
            np.testing.assert_array_equal(a.numpy(), b.numpy(), err_msg=a.path)
    for a, b in zip(model.get_weights(), clean.get_weights()):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("dtype", ["float32", "float64"])
def test_minibatch_variance_is_never_negative(dtype):
    # B equal per-example gradients: the variance is 0, but (1/B)·Σ∇ℓₖ² − g²
    # rounds to either sign.
    g = np.linspace(0.01, 10.0, 200)
    batch_size = 3
    square_sums = [sum(x * x for x in (np.asarray(g, dtype),) * batch_size)]
    optimizer = km.MSVAG(LEARNING_RATE, variance="minibatch")
    variable = keras.Variable(np.zeros(200), dtype=dtype)
    optimizer.add_minibatch_statistics([tf.constant(s, dtype) for s in square_sums], batch_size, [variable])
    optimizer.apply([tf.constant(g, dtype)], [variable])
    g = np.asarray(g, dtype)
    rounded = square_sums[0] / np.asarray(batch_size, dtype) - g * g
    assert np.any(rounded < 0)  # the case this test is about occurs
    variance = optimizer._variances[0].numpy()
    assert np.all(variance >= 0)
    np.testing.assert_array_equal(variance[rounded <= 0], 0.0)
    assert np.all(np.abs(variable.numpy()) <= LEARNING_RATE * g)  # γ ≤ 1
