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
