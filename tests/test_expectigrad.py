"""Expectigrad's own properties, beyond the conformance suite."""

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_momenta as km
from tests.references import ExpectigradReference

LEARNING_RATE = 2.0**-7  # exact in Keras's float32 learning-rate variable


def alternating_gradient(x, t):
    """The authors' test problem: 3x₀² on odd steps, x₀² + 8x₁² on even."""
    if t % 2 == 1:
        return np.array([6 * x[0], 0.0])
    return np.array([2 * x[0], 16 * x[1]])


@pytest.mark.parametrize("beta, sparse_counter", [(0.0, False), (0.9, False), (0.9, True)])
def test_alternating_problem_1000_float64_steps(beta, sparse_counter):
    variable = keras.Variable(np.array([1.0, 1.0]), dtype="float64")
    optimizer = km.Expectigrad(LEARNING_RATE, beta=beta, sparse_counter=sparse_counter)
    reference = ExpectigradReference(beta=beta, sparse_counter=sparse_counter)
    expected = [np.array([1.0, 1.0])]

    @tf.function(jit_compile=True)
    def step(t):
        x = variable.value
        odd = tf.cast(t % 2 == 1, tf.float64)
        gradient = odd * tf.stack([6 * x[0], 0.0 * x[1]]) + (1 - odd) * tf.stack(
            [2 * x[0], 16 * x[1]]
        )
        optimizer.apply([gradient], [variable])

    optimizer.build([variable])
    for t in range(1, 1001):
        step(tf.constant(t))
        expected = reference.step(expected, [alternating_gradient(expected[0], t)], LEARNING_RATE)
        np.testing.assert_allclose(variable.numpy(), expected[0], rtol=1e-10, err_msg=f"t={t}")
    # It minimises the problem: both coordinates move to 0.
    assert np.all(np.abs(variable.numpy()) < 0.5)


def test_state_follows_hyperparameters():
    variables = [keras.Variable(np.zeros((2, 3))), keras.Variable(np.zeros(4))]

    def slot_names(**kwargs):
        optimizer = km.Expectigrad(**kwargs)
        optimizer.build(variables)
        return sorted({v.name.rsplit("_", 1)[-1] for v in optimizer.variables[2:]})

    assert slot_names() == ["count", "momentum", "sum"]
    assert slot_names(beta=0.0) == ["count", "sum"]
    assert slot_names(sparse_counter=False) == ["momentum", "sum"]
    assert slot_names(beta=0.0, sparse_counter=False) == ["sum"]


def test_sparse_gradient_touches_only_its_rows():
    variable = keras.Variable(np.ones((5, 2)))
    optimizer = km.Expectigrad(LEARNING_RATE, beta=0.0)
    gradient = tf.IndexedSlices(
        tf.constant([[1.0, -2.0], [0.5, 0.0], [3.0, 1.0]]),
        tf.constant([1, 3, 1]),
        tf.constant([5, 2]),
    )
    optimizer.apply([gradient], [variable])
    untouched = [0, 2, 4]
    np.testing.assert_array_equal(variable.numpy()[untouched], 1.0)
    assert np.all(variable.numpy()[[1, 3]][:, 0] < 1.0)
    running_sum, count = optimizer._sums[0].numpy(), optimizer._counts[0].numpy()
    np.testing.assert_array_equal(running_sum[untouched], 0.0)
    # Row 1 appears twice: the dense gradient sums the two rows first.
    np.testing.assert_allclose(running_sum[1], [16.0, 1.0])
    np.testing.assert_array_equal(count[3], [1.0, 0.0])


def test_scale_invariance():
    """Multiplying the objective by a constant leaves the steps unchanged."""
    rng = np.random.default_rng(0)
    grads = [rng.normal(size=6) for _ in range(50)]
    finals = []
    for scale in (1.0, 1000.0):
        variable = keras.Variable(np.zeros(6))
        optimizer = km.Expectigrad(LEARNING_RATE, epsilon=1e-12)
        for g in grads:
            optimizer.apply([tf.constant(scale * g)], [variable])
        finals.append(variable.numpy())
    np.testing.assert_allclose(finals[0], finals[1], rtol=1e-8)


def test_zero_gradients_never_make_nan():
    variable = keras.Variable(np.ones(3), dtype="float32")
    optimizer = km.Expectigrad()
    for _ in range(5):
        optimizer.apply([tf.zeros(3)], [variable])
    np.testing.assert_array_equal(variable.numpy(), 1.0)
    assert all(np.all(np.isfinite(v.numpy())) for v in optimizer.variables)


def test_registry_and_get():
    assert km.OPTIMIZERS["expectigrad"] is km.Expectigrad
    assert isinstance(km.get("Expectigrad", beta=0.5), km.Expectigrad)
    with pytest.raises(ValueError, match="known: .*expectigrad"):
        km.get("nope")


@pytest.mark.parametrize("dtype", ["float32", "bfloat16"])
@pytest.mark.parametrize("sparse_counter", [True, False])
def test_statistics_stay_exact_past_2_to_the_31_steps(dtype, sparse_counter):
    """Started as after 2³¹ − 40 steps, the sum of squares keeps every new
    gradient and the count every nonzero one; float32 steps follow the
    float64 reference. (Kept as plain float32, both stopped at 2²⁴ steps.)"""
    rng = np.random.default_rng(6)
    steps_before, shape = 2**31 - 40, (3, 4)
    mean_square = rng.uniform(0.5, 2.0, size=shape)
    exact_sum = steps_before * mean_square
    high = exact_sum.astype(np.float32)
    low = (exact_sum - high.astype(np.float64)).astype(np.float32)
    start = rng.normal(size=shape)
    momentum = rng.normal(size=shape) * 0.1

    variable = keras.Variable(start, dtype=dtype)
    optimizer = km.Expectigrad(LEARNING_RATE, sparse_counter=sparse_counter)
    optimizer.build([variable])
    optimizer.iterations.assign(steps_before)
    optimizer._sums[0].assign(high)
    optimizer._sum_errors[0].assign(low)
    optimizer._momentums[0].assign(momentum.astype(np.float32))
    if sparse_counter:
        optimizer._counts[0].assign(np.full(shape, steps_before, np.int32))

    reference = ExpectigradReference(beta=0.9, sparse_counter=sparse_counter)
    reference.t = steps_before
    reference.s = [high.astype(np.float64) + low.astype(np.float64)]
    reference.n = [np.full(shape, float(steps_before))]
    reference.m = [momentum.astype(np.float32).astype(np.float64)]
    expected = [tf.cast(variable.value, "float64").numpy()]
    step = tf.function(lambda g: optimizer.apply([g], [variable]), jit_compile=True)
    for t in range(80):  # past 2³¹
        # Squares from a quarter to twice the mean: each adds less than 2⁻³⁰
        # of the sum, which plain float32 (2⁻²⁴) rounds away.
        g = np.sqrt(mean_square * rng.uniform(0.25, 2.0, size=shape)) * rng.choice([-1, 1], size=shape)
        g = np.where(rng.random(size=shape) < 0.2, 0.0, g)
        g = tf.cast(tf.constant(g), dtype).numpy().astype(np.float64)
        step(tf.constant(g, dtype=dtype))
        expected = reference.step(expected, [g], LEARNING_RATE)
        if dtype == "float32":
            np.testing.assert_allclose(variable.numpy(), expected[0], rtol=2e-6, atol=2e-7)
    total = optimizer._sums[0].numpy().astype(np.float64) + optimizer._sum_errors[0].numpy()
    np.testing.assert_allclose(total, reference.s[0], rtol=2.0**-44)
    if sparse_counter:
        count = optimizer._counts[0].numpy().astype(np.int64) % 2**32  # unsigned
        np.testing.assert_array_equal(count, reference.n[0])
        assert count.max() > 2**31
