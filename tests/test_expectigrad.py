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


# ------------------------------------------- momentum forms (Section 4.2, Figure 2 left)

MOMENTUM_FORMS = ("outer", "inner", "inner_bias_corrected")
FORM_SHAPES = [(), (7,), (3, 4), (2, 3, 2)]


def form_gradient_stream(steps, seed=11):
    """Gradients of changing scale, with zeros: single coordinates at random,
    and whole tensors for stretches (so s / n falls under the global count)."""
    rng = np.random.default_rng(seed)
    stream = []
    for t in range(steps):
        grads = []
        for shape in FORM_SHAPES:
            g = rng.normal(size=shape) * 10.0 ** rng.uniform(-2, 2)
            g = np.where(rng.random(size=shape) < 0.2, 0.0, g)
            if (t // 25) % 4 == 3:  # quiet stretches
                g = np.zeros(shape)
            grads.append(g)
        stream.append(grads)
    return stream


@pytest.mark.parametrize("sparse_counter", [True, False])
@pytest.mark.parametrize("momentum", MOMENTUM_FORMS)
def test_momentum_forms_follow_reference_step_by_step(momentum, sparse_counter):
    start = [np.linspace(-1.0, 1.0, int(np.prod(s))).reshape(s) for s in FORM_SHAPES]
    variables = [keras.Variable(x, dtype="float64") for x in start]
    optimizer = km.Expectigrad(
        LEARNING_RATE, beta=0.9, sparse_counter=sparse_counter, momentum=momentum
    )
    optimizer.build(variables)
    reference = ExpectigradReference(beta=0.9, sparse_counter=sparse_counter, momentum=momentum)
    step = tf.function(lambda grads: optimizer.apply(grads, variables), jit_compile=True)
    expected = start
    for t, grads in enumerate(form_gradient_stream(300), start=1):
        step([tf.constant(g, dtype="float64") for g in grads])
        expected = reference.step(expected, grads, LEARNING_RATE)
        for variable, e in zip(variables, expected):
            np.testing.assert_allclose(variable.numpy(), e, rtol=1e-10, atol=1e-13, err_msg=f"t={t}")


@pytest.mark.parametrize("momentum", ["nesterov", "Outer", "inner-bias-corrected", "", None, True, 1])
def test_invalid_momentum_form_names_the_argument_and_the_forms(momentum):
    message = r"`momentum` must be one of 'outer', 'inner', 'inner_bias_corrected'; got "
    with pytest.raises(ValueError, match=message):
        km.Expectigrad(momentum=momentum)


def test_momentum_form_is_in_the_config():
    assert km.Expectigrad().get_config()["momentum"] == "outer"
    optimizer = km.Expectigrad(beta=0.5, momentum="inner_bias_corrected")
    config = optimizer.get_config()
    assert config["momentum"] == "inner_bias_corrected"
    assert km.Expectigrad.from_config(config).momentum == "inner_bias_corrected"


@pytest.mark.parametrize("sparse_counter", [True, False])
@pytest.mark.parametrize("sparse_gradient", [False, True])
def test_with_beta_zero_every_momentum_form_is_the_same_update(sparse_counter, sparse_gradient):
    rng = np.random.default_rng(5)
    gradients = []
    for t in range(12):
        values = rng.normal(size=(3, 2)) * (t % 3 != 0)
        gradients.append(
            tf.IndexedSlices(
                tf.constant(values), tf.constant(rng.choice(5, size=3)), tf.constant([5, 2])
            )
        )
    if not sparse_gradient:
        gradients = [tf.convert_to_tensor(g) for g in gradients]
    runs = {}
    for momentum in MOMENTUM_FORMS:
        variable = keras.Variable(np.ones((5, 2)))
        optimizer = km.Expectigrad(
            LEARNING_RATE, beta=0.0, sparse_counter=sparse_counter, momentum=momentum
        )
        optimizer.build([variable])
        # No momentum state: s (and n) only, as for the outer form.
        assert not optimizer._momentums
        names = sorted(v.name.rsplit("_", 1)[-1] for v in optimizer.variables[2:])
        trajectory = []
        for g in gradients:
            optimizer.apply([g], [variable])
            trajectory.append(variable.numpy())
        runs[momentum] = (names, trajectory)
    for momentum in ("inner", "inner_bias_corrected"):
        assert runs[momentum][0] == runs["outer"][0]
        for t, (a, b) in enumerate(zip(runs[momentum][1], runs["outer"][1]), start=1):
            np.testing.assert_array_equal(a, b, err_msg=f"{momentum}, t={t}")


@pytest.mark.parametrize("sparse_counter", [False, True])
@pytest.mark.parametrize("momentum", MOMENTUM_FORMS)
def test_outer_momentum_is_not_rescaled_by_later_denominators(momentum, sparse_counter):
    """One gradient g, then zeros. Outer momentum divides g once, by the
    denominator of step 1, and then only spreads that step over time (the
    paper's linear superposition); inner momentum divides what is left of g by
    the denominator of each later step. With the global count, s/n = g²/t
    falls, so step t of inner momentum is √t times larger (as ε → 0); with
    the per-coordinate count the zeros leave s/n alone, and bias-corrected
    inner momentum is then the same as outer."""
    beta, epsilon, g, steps = 0.9, 1e-8, 3.0, 40
    variable = keras.Variable(np.zeros(1), dtype="float64")
    optimizer = km.Expectigrad(
        LEARNING_RATE, beta=beta, epsilon=epsilon, sparse_counter=sparse_counter, momentum=momentum
    )
    previous = 0.0
    for t in range(1, steps + 1):
        optimizer.apply([tf.constant([g if t == 1 else 0.0], "float64")], [variable])
        moved = previous - variable.numpy()[0]
        previous = variable.numpy()[0]

        # What is left at step t of the impulse given at step 1.
        share = (1 - beta) * beta ** (t - 1)
        correction = 1.0 if momentum == "inner" else 1 - beta**t
        denominator_then = epsilon + abs(g)  # √(s/n) at step 1
        denominator_now = epsilon + (abs(g) if sparse_counter else abs(g) / np.sqrt(t))
        denominator = denominator_then if momentum == "outer" else denominator_now
        expected = LEARNING_RATE / correction * share * g / denominator
        np.testing.assert_allclose(moved, expected, rtol=1e-9, err_msg=f"t={t}")

        outer_step = LEARNING_RATE / (1 - beta**t) * share * g / denominator_then
        if momentum == "inner_bias_corrected":
            # Exactly the ratio of the two denominators: √t or 1.
            ratio = 1.0 if sparse_counter else np.sqrt(t)
            np.testing.assert_allclose(moved / outer_step, ratio, rtol=1e-7, err_msg=f"t={t}")
