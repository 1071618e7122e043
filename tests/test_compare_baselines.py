"""The runner's baselines Yogi, QHM and AggMo (`keras_momenta/compare/baselines.py`).

Each is checked against a float64 NumPy transcription of its paper's update,
step by step, and against Keras's SGD where the papers' special cases
coincide with it.
"""

import keras
import numpy as np
import pytest

from keras_momenta.compare.baselines import QHM, AggMo, Yogi

SHAPES = [(), (5,), (3, 4)]
STEPS = 120


def float32(x):
    """Keras keeps the learning rate in a float32 variable: the reference uses
    the same rounded value (the other hyperparameters are exact in float64)."""
    return float(np.float32(x))


# NumPy references, written from the papers' formulas.


def yogi_reference(x, grads, lr, beta_1=0.9, beta_2=0.999, epsilon=1e-3, v0=1e-6,
                   bias_correction=False):
    """Zaheer et al. (2018), Algorithm 2; with bias correction, Adam's m̂ and v̂."""
    x = np.array(x, dtype=np.float64)
    m, v = np.zeros_like(x), np.full_like(x, v0)
    path = []
    for t, g in enumerate(grads, start=1):
        m = beta_1 * m + (1 - beta_1) * g
        v = v - (1 - beta_2) * np.sign(v - g * g) * g * g
        m_hat, v_hat = m, v
        if bias_correction:
            m_hat, v_hat = m / (1 - beta_1**t), v / (1 - beta_2**t)
        x = x - lr(t) * m_hat / (np.sqrt(v_hat) + epsilon)
        path.append(x)
    return path


def qhm_reference(x, grads, lr, nu=0.7, beta=0.999):
    """Ma & Yarats (2019): g_buf ← βg_buf + (1 − β)g, θ ← θ − α[(1 − ν)g + ν·g_buf]."""
    x = np.array(x, dtype=np.float64)
    buf = np.zeros_like(x)
    path = []
    for t, g in enumerate(grads, start=1):
        buf = beta * buf + (1 - beta) * g
        x = x - lr(t) * ((1 - nu) * g + nu * buf)
        path.append(x)
    return path


def aggmo_reference(x, grads, lr, betas=(0.0, 0.9, 0.99)):
    """Lucas et al. (2019): v⁽ⁱ⁾ ← β⁽ⁱ⁾v⁽ⁱ⁾ − g, θ ← θ + (γ/K)Σᵢ v⁽ⁱ⁾."""
    x = np.array(x, dtype=np.float64)
    vs = [np.zeros_like(x) for _ in betas]
    path = []
    for t, g in enumerate(grads, start=1):
        vs = [beta * v - g for beta, v in zip(betas, vs)]
        x = x + lr(t) / len(betas) * sum(vs)
        path.append(x)
    return path


def random_gradients(rng, shape, steps=STEPS):
    """Gaussian gradients whose scale wanders over three orders of magnitude,
    so that Yogi's v both grows and shrinks."""
    scales = np.exp(rng.uniform(np.log(1e-2), np.log(10.0), size=steps))
    return [scale * rng.standard_normal(shape) for scale in scales]


def run_keras(optimizer, starts, grads_per_variable):
    """The variables' values after each step, applied eagerly in float64."""
    variables = [keras.Variable(start, dtype="float64") for start in starts]
    paths = [[] for _ in variables]
    for step in range(len(grads_per_variable[0])):
        optimizer.apply([grads[step] for grads in grads_per_variable], variables)
        for path, variable in zip(paths, variables):
            path.append(np.array(variable.numpy()))
    return paths


def assert_paths_agree(actual, expected, rtol=1e-10):
    assert len(actual) == len(expected) >= 100
    for step, (a, e) in enumerate(zip(actual, expected), start=1):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-13, err_msg=f"step {step}")


CASES = {
    "yogi": (lambda: Yogi(), yogi_reference, {}, 1e-2),
    "yogi_tuned": (
        lambda: Yogi(0.05, beta_1=0.5, beta_2=0.9, epsilon=1e-6, initial_accumulator_value=0.3),
        yogi_reference,
        dict(beta_1=0.5, beta_2=0.9, epsilon=1e-6, v0=0.3),
        0.05,
    ),
    "yogi_bias_corrected": (
        lambda: Yogi(bias_correction=True),
        yogi_reference,
        dict(bias_correction=True),
        1e-2,
    ),
    "yogi_no_momentum_zero_start": (
        lambda: Yogi(beta_1=0.0, initial_accumulator_value=0.0),
        yogi_reference,
        dict(beta_1=0.0, v0=0.0),
        1e-2,
    ),
    "qhm": (lambda: QHM(0.1), qhm_reference, {}, 0.1),
    "qhm_tuned": (lambda: QHM(0.03, nu=0.3, beta=0.9), qhm_reference, dict(nu=0.3, beta=0.9), 0.03),
    "aggmo": (lambda: AggMo(0.01), aggmo_reference, {}, 0.01),
    "aggmo_tuned": (
        lambda: AggMo(0.003, betas=[0.5, 0.95, 0.999, 0.0]),
        aggmo_reference,
        dict(betas=(0.5, 0.95, 0.999, 0.0)),
        0.003,
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_matches_paper_reference_step_by_step(case):
    make, reference, hyperparameters, lr = CASES[case]
    rng = np.random.default_rng(sorted(CASES).index(case))
    starts = [rng.standard_normal(shape) for shape in SHAPES]
    grads = [random_gradients(rng, shape) for shape in SHAPES]
    paths = run_keras(make(), starts, grads)
    for path, start, g in zip(paths, starts, grads):
        expected = reference(start, g, lambda t: float32(lr), **hyperparameters)
        assert_paths_agree(path, expected)


def test_yogi_second_moment_moves_both_ways():
    """The reference test exercises both branches of sign(v − g²)."""
    rng = np.random.default_rng(0)
    grads = random_gradients(rng, (50,))
    v, signs = np.full(50, 1e-6), set()
    for g in grads:
        signs.update(np.unique(np.sign(v - g * g)).tolist())
        v = v - 0.001 * np.sign(v - g * g) * g * g
    assert {-1.0, 1.0} <= signs


@pytest.mark.parametrize(
    "make, reference, kwargs",
    [
        (lambda lr: QHM(lr, nu=0.6, beta=0.9), qhm_reference, dict(nu=0.6, beta=0.9)),
        (lambda lr: AggMo(lr, betas=[0.0, 0.5, 0.9]), aggmo_reference, dict(betas=(0, 0.5, 0.9))),
        (lambda lr: Yogi(lr, bias_correction=True), yogi_reference, dict(bias_correction=True)),
    ],
)
def test_schedule_scales_each_whole_step(make, reference, kwargs):
    """Under a schedule the step size of step t multiplies that step's whole
    direction (papers' form), unlike Keras's SGD, whose velocity keeps past
    step sizes."""
    boundaries, values = [39, 79], [0.25, 0.0625, 0.015625]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)

    def lr(t):  # t = iterations + 1
        return values[sum(t - 1 >= b + 1 for b in boundaries)]

    rng = np.random.default_rng(7)
    start, grads = rng.standard_normal((4,)), random_gradients(rng, (4,))
    (path,) = run_keras(make(schedule), [start], [grads])
    assert_paths_agree(path, reference(start, grads, lr, **kwargs))


# Special cases that coincide with Keras's SGD. Step sizes and momenta are
# dyadic, so every product is exact and the paths agree to the last bit
# except where the order of additions differs.


def sgd_agreement(ours, sgd, shape=(3, 4), steps=STEPS, rtol=1e-13):
    rng = np.random.default_rng(11)
    start, grads = rng.standard_normal(shape), random_gradients(rng, shape, steps)
    (path,) = run_keras(ours, [start], [grads])
    (expected,) = run_keras(sgd, [start], [grads])
    assert_paths_agree(path, expected, rtol=rtol)


def test_qhm_nu_zero_is_plain_sgd():
    sgd_agreement(QHM(0.125, nu=0.0, beta=0.75), keras.optimizers.SGD(0.125))


def test_qhm_nu_one_is_keras_momentum_with_step_scaled_by_one_minus_beta():
    # QHM's buffer is an average: Keras's velocity is −α(1 − β)·buffer.
    sgd_agreement(
        QHM(0.5, nu=1.0, beta=0.75), keras.optimizers.SGD(0.5 * (1 - 0.75), momentum=0.75)
    )


def test_aggmo_zero_beta_is_plain_sgd():
    sgd_agreement(AggMo(0.0625, betas=[0.0]), keras.optimizers.SGD(0.0625))


def test_aggmo_one_beta_is_keras_momentum():
    # Keras's velocity is γ·v: same step size, same momentum constant.
    sgd_agreement(AggMo(0.0625, betas=[0.875]), keras.optimizers.SGD(0.0625, momentum=0.875))


def test_aggmo_equal_betas_are_one_beta():
    sgd_agreement(AggMo(0.0625, betas=[0.875] * 3), AggMo(0.0625, betas=[0.875]))


def test_aggmo_exp_form():
    assert AggMo.from_exp_form(0.1).betas == pytest.approx([0.0, 0.9, 0.99], abs=1e-15)
    assert AggMo.from_exp_form(0.1, a=0.5, k=4).betas == [0.0, 0.5, 0.75, 0.875]
    assert AggMo().betas == [0.0, 0.9, 0.99]


@pytest.mark.parametrize("make", [Yogi, lambda: QHM(0.1), AggMo], ids=["yogi", "qhm", "aggmo"])
def test_row_sparse_gradients_act_as_their_dense_sum(make):
    """An embedding's `tf.IndexedSlices` gradient (rows repeated) updates the
    variable as its dense equivalent does."""
    import tensorflow as tf

    rng = np.random.default_rng(3)
    start = rng.standard_normal((6, 2))
    indices = [np.array([0, 3, 3]), np.array([5, 1, 0]), np.array([2, 2, 2])]
    sparse = [tf.IndexedSlices(tf.constant(rng.standard_normal((3, 2))), tf.constant(i),
                               tf.constant([6, 2])) for i in indices * 40]
    dense = [tf.convert_to_tensor(g) for g in sparse]
    (path,) = run_keras(make(), [start], [sparse])
    (expected,) = run_keras(make(), [start], [dense])
    assert_paths_agree(path, expected, rtol=1e-13)


# Training with model.fit.


def regression_data(seed=0, n=256):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((n, 8)).astype("float32")
    w = rng.standard_normal((8, 1)).astype("float32")
    y = np.tanh(x @ w) + 0.05 * rng.standard_normal((n, 1)).astype("float32")
    return x, y


FIT_OPTIMIZERS = {
    "yogi": lambda: Yogi(),
    "qhm": lambda: QHM(0.1),
    "aggmo": lambda: AggMo(0.01),
}


@pytest.mark.parametrize("jit_compile", [False, True])
@pytest.mark.parametrize("name", sorted(FIT_OPTIMIZERS))
def test_model_fit_decreases_loss(name, jit_compile):
    keras.utils.set_random_seed(1)
    x, y = regression_data()
    model = keras.Sequential(
        [keras.Input((8,)), keras.layers.Dense(16, activation="tanh"), keras.layers.Dense(1)]
    )
    model.compile(optimizer=FIT_OPTIMIZERS[name](), loss="mse", jit_compile=jit_compile)
    before = model.evaluate(x, y, batch_size=256, verbose=0)
    history = model.fit(x, y, batch_size=32, epochs=6, shuffle=False, verbose=0)
    after = model.evaluate(x, y, batch_size=256, verbose=0)
    assert np.all(np.isfinite(history.history["loss"]))
    assert after < 0.5 * before, (before, after)
    assert int(model.optimizer.iterations.numpy()) == 6 * 8


@pytest.mark.parametrize("jit_compile", [False, True])
def test_yogi_initial_accumulator_survives_model_fit(jit_compile):
    """v₀ comes from an initializer: model.fit builds the optimizer where
    assignments are dropped. A kernel fed zeros gets zero gradients, so its v
    stays v₀; the bias's v moves."""
    model = keras.Sequential([keras.Input((2,)), keras.layers.Dense(1)])
    model.compile(optimizer=Yogi(initial_accumulator_value=0.25), loss="mse",
                  jit_compile=jit_compile)
    model.fit(np.zeros((8, 2), "float32"), np.ones((8, 1), "float32"), batch_size=4, verbose=0)
    optimizer = model.optimizer
    kernel_v = optimizer._second_moments[optimizer._get_variable_index(model.layers[0].kernel)]
    bias_v = optimizer._second_moments[optimizer._get_variable_index(model.layers[0].bias)]
    np.testing.assert_array_equal(kernel_v.numpy(), np.full((2, 1), 0.25, "float32"))
    assert not np.allclose(bias_v.numpy(), 0.25)


# Serialisation.


ROUND_TRIP = [
    (Yogi, dict(learning_rate=0.02, beta_1=0.8, beta_2=0.99, epsilon=1e-4,
                initial_accumulator_value=1e-3, bias_correction=True, clipnorm=1.0,
                name="my_yogi")),
    (QHM, dict(learning_rate=0.25, nu=0.5, beta=0.99, weight_decay=1e-4, use_ema=True,
               ema_momentum=0.9, ema_overwrite_frequency=3, clipvalue=0.5)),
    (AggMo, dict(learning_rate=0.05, betas=[0.0, 0.5, 0.99, 0.999], global_clipnorm=2.0,
                 gradient_accumulation_steps=2, loss_scale_factor=4.0)),
]


@pytest.mark.parametrize("cls, kwargs", ROUND_TRIP, ids=lambda x: getattr(x, "__name__", ""))
def test_get_config_round_trip(cls, kwargs):
    optimizer = cls(**kwargs)
    config = optimizer.get_config()
    for key, value in kwargs.items():  # every argument given is kept
        # (the learning rate comes back from its float32 variable)
        expected = pytest.approx(value, rel=1e-7) if isinstance(value, float) else value
        assert config[key] == expected, key
    clone = cls.from_config(config)
    assert clone.get_config() == config
    # Through Keras's generic (de)serialisation, found by its registered name.
    serialized = keras.optimizers.serialize(optimizer)
    assert serialized["registered_name"] == f"keras_momenta.compare>{cls.__name__}"
    revived = keras.optimizers.deserialize(serialized)
    assert type(revived) is cls and revived.get_config() == config


def test_get_config_keeps_a_schedule():
    schedule = keras.optimizers.schedules.ExponentialDecay(0.1, 100, 0.5)
    config = AggMo(schedule).get_config()
    clone = AggMo.from_config(config)
    assert isinstance(clone._learning_rate, keras.optimizers.schedules.ExponentialDecay)
    assert clone._learning_rate.get_config() == schedule.get_config()


@pytest.mark.parametrize("make", FIT_OPTIMIZERS.values(), ids=list(FIT_OPTIMIZERS))
def test_saved_model_reloads_without_custom_objects(make, tmp_path):
    keras.utils.set_random_seed(2)
    x, y = regression_data(n=64)
    model = keras.Sequential([keras.Input((8,)), keras.layers.Dense(4), keras.layers.Dense(1)])
    model.compile(optimizer=make(), loss="mse")
    model.fit(x, y, batch_size=16, verbose=0)
    path = tmp_path / "model.keras"
    model.save(path)
    loaded = keras.models.load_model(path)
    assert type(loaded.optimizer) is type(model.optimizer)
    assert loaded.optimizer.get_config() == model.optimizer.get_config()
    saved_state = [v.numpy() for v in model.optimizer.variables]
    loaded_state = [v.numpy() for v in loaded.optimizer.variables]
    assert len(saved_state) == len(loaded_state)
    for saved, restored in zip(saved_state, loaded_state):
        np.testing.assert_array_equal(saved, restored)
    # Training goes on from the restored state exactly as in the original.
    model.fit(x, y, batch_size=16, verbose=0, shuffle=False)
    loaded.fit(x, y, batch_size=16, verbose=0, shuffle=False)
    for a, b in zip(model.get_weights(), loaded.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-6, atol=1e-7)


# Hyperparameter checks.


@pytest.mark.parametrize(
    "make, message",
    [
        (lambda: Yogi(beta_1=1.0), r"`beta_1` must be in \[0.0, 1.0\)"),
        (lambda: Yogi(beta_1=-0.1), r"`beta_1` must be in \[0.0, 1.0\)"),
        (lambda: Yogi(beta_2=1.0), r"`beta_2` must be in \[0.0, 1.0\)"),
        (lambda: Yogi(beta_2=0.999999999), r"`beta_2` .*once rounded to float32"),
        (lambda: Yogi(epsilon=0.0), r"`epsilon` must be in \(0, inf\)"),
        (lambda: Yogi(epsilon=float("inf")), r"`epsilon` must be in \(0, inf\)"),
        (lambda: Yogi(initial_accumulator_value=-1e-6),
         r"`initial_accumulator_value` must be in \[0.0, inf\)"),
        (lambda: Yogi(bias_correction=1), r"`bias_correction` must be True or False"),
        (lambda: Yogi(learning_rate=0.0), r"`learning_rate` must be a positive finite float"),
        (lambda: Yogi(beta_1="0.9"), r"`beta_1` must be a real number"),
        (lambda: QHM(nu=1.5), r"`nu` must be in \[0.0, 1.0\]"),
        (lambda: QHM(nu=-0.1), r"`nu` must be in \[0.0, 1.0\]"),
        (lambda: QHM(beta=1.0), r"`beta` must be in \[0.0, 1.0\)"),
        (lambda: QHM(learning_rate=-1.0), r"`learning_rate` must be a positive finite float"),
        (lambda: AggMo(betas=[0.0, 1.0]), r"`betas\[1\]` must be in \[0.0, 1.0\)"),
        (lambda: AggMo(betas=[-0.5]), r"`betas\[0\]` must be in \[0.0, 1.0\)"),
        (lambda: AggMo(betas=[]), r"`betas` must be a non-empty list"),
        (lambda: AggMo(betas=0.9), r"`betas` must be a non-empty list"),
        (lambda: AggMo(betas="0.9"), r"`betas` must be a non-empty list"),
        (lambda: AggMo(learning_rate=float("nan")),
         r"`learning_rate` must be a positive finite float"),
        (lambda: AggMo.from_exp_form(a=0.0), r"`a` must be in \(0.0, 1.0\]"),
        (lambda: AggMo.from_exp_form(k=0), r"`k` must be an integer"),
    ],
)
def test_invalid_hyperparameters_raise(make, message):
    with pytest.raises(ValueError, match=message):
        make()


def test_boundary_hyperparameters_are_accepted():
    Yogi(beta_1=0.0, beta_2=0.0, initial_accumulator_value=0.0)
    QHM(nu=0.0, beta=0.0)
    QHM(nu=1.0)
    AggMo(betas=(0.0,))
    AggMo(betas=np.array([0.5, 0.9]))
