"""What every keras_momenta optimizer must do, checked for each registry case."""

import os
import tempfile

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_momenta as km
from keras_momenta.output_point import OutputPointOptimizer
from tests.harness import (
    IN_PLACE_SHAPE,
    SHAPES,
    SHARED_ARGUMENTS,
    KerasSemantics,
    case_model,
    gradient_stream,
    initial_params,
    large_copies,
    least_squares_data,
    least_squares_gradients,
    least_squares_reference,
)
from tests.registry import CASES

SHAPE_LIST = list(SHAPES.values())
case_param = pytest.mark.parametrize("case", [c.param for c in CASES])


# ---------------------------------------------------------------- helpers


def make_variables(values, dtype):
    return [keras.Variable(v, dtype=dtype) for v in values]


def case_statistics(case, stream, dtype="float64"):
    """Per-example statistics for each step of `stream` (None unless the case
    takes them), rounded to the dtype the optimizer receives them in."""
    if case.statistics is None:
        return None
    dtype = _statistics_dtype(dtype)
    return [
        ([s.astype(dtype).astype(np.float64) for s in square_sums], batch_size)
        for square_sums, batch_size in case.statistics(stream)
    ]


def _statistics_dtype(dtype):
    # Sums of squares are handed over in float32 for 16-bit variables, where
    # float16 would overflow.
    return "float32" if dtype in ("float16", "bfloat16") else dtype


def statistics_tensors(statistics, dtype="float64"):
    """Arguments for a step function: () or (square sums, batch size) as tensors."""
    if statistics is None:
        return ()
    square_sums, batch_size = statistics
    dtype = _statistics_dtype(dtype)
    return ([tf.constant(s, dtype=dtype) for s in square_sums], tf.constant(batch_size, dtype=dtype)),


def step_function(optimizer, variables, mode):
    def apply(grads, statistics=None):
        if statistics is not None:
            optimizer.add_minibatch_statistics(*statistics, variables)
        optimizer.apply(grads, variables)

    if mode == "eager":
        return apply
    return tf.function(apply, jit_compile=(mode == "xla"))


def run_optimizer(optimizer, params, stream, dtype="float64", mode="function", statistics=None):
    """Apply `stream` and return the variables' values after every step.

    Long runs use one traced `tf.function` step; that eager, traced and XLA
    steps agree is checked on its own (test_eager_function_and_xla_agree).
    """
    variables = make_variables(params, dtype)
    optimizer.build(variables)
    step = step_function(optimizer, variables, mode)
    trajectory = []
    for t, grads in enumerate(stream):
        extra = statistics_tensors(statistics and statistics[t], dtype)
        step([tf.constant(g, dtype=dtype) for g in grads], *extra)
        trajectory.append([v.numpy().astype(np.float64) for v in variables])
    return trajectory, variables


def run_reference(semantics, params, stream, round_to=None, statistics=None):
    params = [np.asarray(p, np.float64) for p in params]
    trajectory = []
    for t, grads in enumerate(stream):
        params = semantics.step(params, grads, statistics and statistics[t])
        if round_to is not None:
            params = [p.astype(round_to).astype(np.float64) for p in params]
        trajectory.append(params)
    return trajectory


def assert_trajectories_close(actual, expected, rtol, atol=0.0):
    for t, (a_step, e_step) in enumerate(zip(actual, expected)):
        for a, e in zip(a_step, e_step):
            np.testing.assert_allclose(
                a, e, rtol=rtol, atol=atol, err_msg=f"step {t + 1}"
            )


# ------------------------------------------------ 1. agreement with the paper


@case_param
@pytest.mark.parametrize("dtype, rtol", [("float64", 1e-10), ("float32", 1e-5)])
def test_matches_reference_for_200_steps(case, dtype, rtol):
    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, 200)
    # The optimizer sees gradients rounded to the variable's dtype; so does
    # the reference.
    stream = [[g.astype(dtype).astype(np.float64) for g in grads] for grads in stream]
    params = [p.astype(dtype).astype(np.float64) for p in params]
    statistics = case_statistics(case, stream, dtype)
    actual, _ = run_optimizer(case.make(), params, stream, dtype, statistics=statistics)
    expected = run_reference(
        KerasSemantics(case.make_reference(), case.learning_rate), params, stream,
        statistics=statistics,
    )
    # Elementwise relative error is meaningless where a coordinate crosses
    # zero (IGT's shifted point is a difference of terms of the problem's
    # size), so an absolute floor scaled to the trajectory is added: a few
    # float64 ulps, and in float32 the whole check is against that scale.
    scale = max(float(np.max(np.abs(e))) for step in expected for e in step)
    if dtype == "float64":
        assert_trajectories_close(actual, expected, rtol=rtol, atol=1e-14 * scale)
    else:
        assert_trajectories_close(actual, expected, rtol=0, atol=rtol * scale)


# ------------------------------------------------ 2. eager, tf.function, XLA


@case_param
def test_eager_function_and_xla_agree(case):
    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, 30)
    statistics = case_statistics(case, stream)
    runs = {
        mode: run_optimizer(case.make(), params, stream, "float64", mode, statistics)[0]
        for mode in ("eager", "function", "xla")
    }
    # XLA may fuse a multiply-add (one rounding instead of two): agreement is
    # to the last few bits, measured against the trajectory's scale.
    scale = max(float(np.max(np.abs(e))) for step in runs["eager"] for e in step)
    assert_trajectories_close(runs["function"], runs["eager"], rtol=1e-12, atol=1e-14 * scale)
    assert_trajectories_close(runs["xla"], runs["eager"], rtol=1e-12, atol=1e-14 * scale)


@case_param
def test_xla_updates_the_state_in_place(case):
    """The XLA-compiled update copies no parameter-sized buffer: every state
    tensor, AM2-SGD's point table too, is written where it lies."""
    shapes = [IN_PLACE_SHAPE, (3,)]
    optimizer = case.make()
    variables = make_variables(initial_params(shapes), "float32")
    optimizer.build(variables)
    stream = gradient_stream(shapes, 1)
    statistics = statistics_tensors(
        (case_statistics(case, stream, "float32") or [None])[0], "float32"
    ) or (None,)
    grads = [tf.constant(g, dtype="float32") for g in stream[0]]
    step = step_function(optimizer, variables, "xla")
    hlo = step.experimental_get_compiler_ir(grads, *statistics)(stage="optimized_hlo")
    assert large_copies(hlo) == []


# ------------------------------------------------ 3. model.fit


@case_param
@pytest.mark.parametrize("jit_compile", [False, True])
def test_fit_follows_reference(case, jit_compile):
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    model = case_model(case)
    initial = model.get_weights()
    model.compile(optimizer=case.make(), loss="mse", jit_compile=jit_compile)
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    expected = least_squares_reference(case, initial, x, y, 16, 3)
    for actual, wanted in zip(model.get_weights(), expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-10)


@case_param
def test_whole_train_step_compiles_like_a_tpu_step(case):
    """What `TPUStrategy` asks of a step, as far as a CPU allows: the whole
    train function compiled by XLA (must-compile, so an op XLA cannot compile,
    such as a round trip to the host, fails), several steps per execution,
    and the strategy's code paths (merge calls, per-variable updates)."""
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    with tf.distribute.OneDeviceStrategy("/cpu:0").scope():
        model = case_model(case)
        model.compile(optimizer=case.make(), loss="mse", jit_compile=True, steps_per_execution=3)
    initial = model.get_weights()
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    expected = least_squares_reference(case, initial, x, y, 16, 3)
    for actual, wanted in zip(model.get_weights(), expected):
        np.testing.assert_allclose(actual, wanted, rtol=1e-10)


# ------------------------------------------------ 4. config and checkpoints


@case_param
def test_config_round_trip(case):
    optimizer = case.make()
    config = optimizer.get_config()
    clone = case.cls.from_config(config)
    assert clone.get_config() == config
    restored = keras.optimizers.deserialize(keras.optimizers.serialize(optimizer))
    assert type(restored) is case.cls
    assert restored.get_config() == config

    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, 10)
    statistics = case_statistics(case, stream)
    first, _ = run_optimizer(optimizer, params, stream, statistics=statistics)
    second, _ = run_optimizer(clone, params, stream, statistics=statistics)
    assert_trajectories_close(second, first, rtol=0)


def _fit(model, x, y, epochs, callbacks=()):
    model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=list(callbacks))


class _AtEpochEnd(keras.callbacks.Callback):
    """Runs `fn(model)` at the end of epoch `epoch` (1-based), inside `fit`.

    Saving from here is a real mid-run save: `fit` has not yet finalised the
    variables (optimizers with an output point write it at the end of `fit`).
    """

    def __init__(self, epoch, fn):
        super().__init__()
        self.epoch, self.fn = epoch, fn

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epoch:
            self.fn(self.model)


def _optimizer_state(optimizer):
    return [v.numpy() for v in optimizer.variables]


# Per-coordinate counts (Expectigrad's) are integers whatever the variable's dtype.
COUNTER_DTYPE = "int32"


def _slots(optimizer):
    """Per-variable state: everything but the step counter, the learning rate,
    integer scalars (seeds, steps), output-point bookkeeping and AM-SGD's
    restart-after-rate-drop bookkeeping."""
    shared, wrapped = [], optimizer
    while wrapped is not None:  # a wrapper's inner optimizers have their own
        shared += [wrapped.iterations, getattr(wrapped, "_learning_rate", None)]
        wrapped = getattr(wrapped, "inner_optimizer", None)
    return [
        v for v in optimizer.variables
        if not any(v is s for s in shared)
        and not (v.shape == () and "int" in v.dtype)
        and not v.path.endswith(("point_state", "rate_drop", "restart_record"))
    ]


@case_param
@pytest.mark.parametrize("saver", ["keras_file", "tf_checkpoint"])
def test_checkpoint_resumes_exact_trajectory(case, saver, tmp_path):
    """Saved mid-run, restored into a new model, trained on: same trajectory."""
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    model = case_model(case)
    model.compile(optimizer=case.make(), loss="mse", jit_compile=True)
    saved = {}

    def save(m):
        saved["state"] = _optimizer_state(m.optimizer)
        if saver == "keras_file":
            saved["path"] = tmp_path / "mid_run.keras"
            m.save(saved["path"])
        else:
            checkpoint = tf.train.Checkpoint(model=m, optimizer=m.optimizer)
            saved["path"] = checkpoint.save(str(tmp_path / "ckpt"))

    _fit(model, x, y, 4, [_AtEpochEnd(2, save)])  # the uninterrupted run

    if saver == "keras_file":
        restored = keras.models.load_model(saved["path"])  # safe mode, no custom_objects
        assert type(restored.optimizer) is case.cls
    else:
        restored = case_model(case, seed=7)
        restored.compile(optimizer=case.make(), loss="mse", jit_compile=True)
        restored.optimizer.build(restored.trainable_variables)
        tf.train.Checkpoint(model=restored, optimizer=restored.optimizer).restore(
            saved["path"]
        ).assert_consumed()
    for state, loaded in zip(saved["state"], _optimizer_state(restored.optimizer), strict=True):
        np.testing.assert_array_equal(loaded, state)
    _fit(restored, x, y, 2)
    for a, b in zip(restored.get_weights(), model.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------ 5. shared base-class arguments


def _step_decay():
    # Values exact in float32, where Keras evaluates schedules.
    boundaries, values = [20, 40], [2.0**-4, 2.0**-6, 2.0**-8]
    schedule = keras.optimizers.schedules.PiecewiseConstantDecay(boundaries, values)
    return schedule, lambda step: values[sum(step > b for b in boundaries)]




@case_param
@pytest.mark.parametrize("argument", list(SHARED_ARGUMENTS))
def test_shared_argument_matches_keras_semantics(case, argument):
    keras_kwargs, harness_kwargs = SHARED_ARGUMENTS[argument]
    if argument in case.unsupported:
        with pytest.raises(ValueError, match=case.unsupported[argument]):
            case.make(**keras_kwargs)
        return
    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, 60)
    optimizer = case.make(**keras_kwargs)
    statistics = case_statistics(case, stream)
    actual, variables = run_optimizer(optimizer, params, stream, statistics=statistics)
    semantics = KerasSemantics(case.make_reference(), case.learning_rate, **harness_kwargs)
    expected = run_reference(semantics, params, stream, statistics=statistics)
    assert_trajectories_close(actual, expected, rtol=1e-10)
    if argument == "gradient_accumulation_steps":
        assert int(optimizer.iterations.numpy()) == semantics.applied == 20
    if argument == "use_ema":
        for average, wanted in zip(optimizer._model_variables_moving_average, semantics.ema):
            np.testing.assert_allclose(average.numpy(), wanted, rtol=1e-10)
        optimizer.finalize_variable_values(variables)
        for variable, wanted in zip(variables, semantics.ema):
            np.testing.assert_allclose(variable.numpy(), wanted, rtol=1e-10)


@case_param
def test_weight_decay_respects_exclusions(case):
    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, 60)
    optimizer = case.make(weight_decay=0.125)
    variables = make_variables(params, "float64")
    optimizer.exclude_from_weight_decay(var_list=[variables[0], variables[2]])
    optimizer.build(variables)
    step = step_function(optimizer, variables, "function")
    statistics = case_statistics(case, stream)
    actual = []
    for t, grads in enumerate(stream):
        step([tf.constant(g) for g in grads], *statistics_tensors(statistics and statistics[t]))
        actual.append([v.numpy() for v in variables])
    semantics = KerasSemantics(
        case.make_reference(),
        case.learning_rate,
        weight_decay=0.125,
        decay_mask=[False, True, False, True],
    )
    expected = run_reference(semantics, params, stream, statistics=statistics)
    assert_trajectories_close(actual, expected, rtol=1e-10)


@case_param
def test_learning_rate_schedule(case):
    schedule, formula = _step_decay()
    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, 60)
    statistics = case_statistics(case, stream)
    actual, _ = run_optimizer(
        case.make(learning_rate=schedule), params, stream, mode="xla", statistics=statistics
    )
    expected = run_reference(
        KerasSemantics(case.make_reference(), formula), params, stream, statistics=statistics
    )
    assert_trajectories_close(actual, expected, rtol=1e-10)


@case_param
def test_mixed_float16_policy(case):
    keras.mixed_precision.set_global_policy("mixed_float16")
    x, y = least_squares_data()
    model = case_model(case)
    # A quarter of the case's step: at the full step HB-IGT with c = 1
    # oscillates on this problem, which says nothing about mixed precision.
    model.compile(optimizer=case.make(learning_rate=case.learning_rate / 4), loss="mse")
    assert isinstance(model.optimizer, keras.optimizers.LossScaleOptimizer)
    inner = model.optimizer.inner_optimizer
    assert type(inner) is case.cls
    history = model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0)
    losses = history.history["loss"]
    assert np.all(np.isfinite(losses)) and losses[-1] < losses[0]
    assert (_slots(inner) or case.stateless) and all(
        v.dtype in ("float32", COUNTER_DTYPE) for v in _slots(inner)
    )

    # A step with a non-finite gradient is skipped: no state changes.
    before = _optimizer_state(inner) + [w.copy() for w in model.get_weights()]
    bad = [tf.fill(v.shape, np.inf) for v in model.trainable_variables]
    model.optimizer.apply(bad, model.trainable_variables)
    after = _optimizer_state(inner) + model.get_weights()
    for a, b in zip(after, before):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------ 6. sparse gradients


@case_param
@pytest.mark.parametrize("mode", ["eager", "xla"])
def test_sparse_gradients_match_dense(case, mode):
    rng = np.random.default_rng(3)
    shape = (6, 3)
    dense_var, sparse_var = make_variables([np.ones(shape)] * 2, "float64")
    dense_opt, sparse_opt = case.make(), case.make()
    dense_opt.build([dense_var])
    sparse_opt.build([sparse_var])
    dense_step = step_function(dense_opt, [dense_var], mode)
    sparse_step = step_function(sparse_opt, [sparse_var], mode)
    for t in range(30):
        # Repeated indices (as an Embedding lookup of a repeated token gives)
        # must be summed, as in the dense gradient.
        indices = rng.choice([0, 2, 3, 5], size=5)
        values = rng.normal(size=(5, 3)) * (t % 4 != 0)
        sparse = tf.IndexedSlices(
            tf.constant(values), tf.constant(indices, tf.int64), tf.constant(shape, tf.int64)
        )
        dense = tf.convert_to_tensor(sparse)
        extra = statistics_tensors((case_statistics(case, [[dense.numpy()]]) or [None])[0])
        dense_step([dense], *extra)
        sparse_step([sparse], *extra)
        np.testing.assert_allclose(sparse_var.numpy(), dense_var.numpy(), rtol=1e-12, atol=1e-15)
    for a, b in zip(_optimizer_state(sparse_opt), _optimizer_state(dense_opt)):
        np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-15)


# ------------------------------------------------ 7. invalid hyperparameters


@case_param
def test_invalid_hyperparameters_name_the_argument(case):
    assert case.invalid, "every case must list invalid hyperparameters"
    for kwargs, argument in case.invalid:
        with pytest.raises(ValueError, match=f"`{argument}`"):
            case.make(**kwargs)


@case_param
def test_integer_trainable_variables_are_refused(case):
    optimizer = case.make()
    variables = [keras.Variable(np.zeros(3)), keras.Variable(np.zeros(2, "int32"), dtype="int32")]
    with pytest.raises(ValueError, match="dtype int32.*floating-point"):
        optimizer.build(variables)


# ------------------------------------------------ 8. variable dtypes


@case_param
@pytest.mark.parametrize(
    "dtype, steps", [("float16", 20), ("bfloat16", 20), ("float32", 20), ("float64", 20)]
)
def test_variable_dtypes(case, dtype, steps):
    np_dtype = keras.backend.standardize_dtype(dtype)
    np_dtype = np.float32 if np_dtype == "bfloat16" else np.dtype(np_dtype)
    params = initial_params(SHAPE_LIST)
    stream = gradient_stream(SHAPE_LIST, steps)
    variables = make_variables(params, dtype)
    optimizer = case.make()
    optimizer.build(variables)
    step = step_function(optimizer, variables, "eager")
    statistics = case_statistics(case, stream, dtype)
    for t, grads in enumerate(stream):
        extra = statistics_tensors(statistics and statistics[t], dtype)
        step([tf.constant(g, dtype=dtype) for g in grads], *extra)
    for v in variables:
        assert v.dtype == dtype
    wanted_state_dtype = "float32" if dtype in ("float16", "bfloat16") else dtype
    for state in _slots(optimizer):
        assert state.dtype in (wanted_state_dtype, COUNTER_DTYPE), f"{state.path} is {state.dtype}"
    # Rounding the iterate to the dtype every step bounds the drift from the
    # float64 reference by a few units in the last place per step.
    unit_roundoff = {"float16": 2**-11, "bfloat16": 2**-8, "float32": 2**-24, "float64": 2**-53}
    rounded_params = [tf.cast(tf.constant(p), dtype).numpy().astype(np.float64) for p in params]
    rounded_stream = [
        [tf.cast(tf.constant(g), dtype).numpy().astype(np.float64) for g in grads]
        for grads in stream
    ]
    expected = run_reference(
        KerasSemantics(case.make_reference(), case.learning_rate),
        rounded_params,
        rounded_stream,
        statistics=statistics,
    )[-1]
    tolerance = 4 * steps * unit_roundoff[dtype]
    for v, e in zip(variables, expected):
        actual = tf.cast(v.value, "float64").numpy()
        scale = max(1.0, float(np.max(np.abs(e))))
        np.testing.assert_allclose(actual, e, rtol=0, atol=tolerance * scale)


# ------------------------------------------------ 9. output point and the user's model


def case_params(cases, default_run):
    """`cases` as parameters; those not in `default_run` (ids) only with the
    slow tests (CI runs every one)."""
    return [
        pytest.param(c, id=c.id, marks=[] if c.id in default_run and not c.slow else [pytest.mark.slow])
        for c in cases
    ]


OUTPUT_POINT_CASES = [c.param for c in CASES if c.make().has_output_point]
# Optimizers whose state holds points (IGT's θ, AM's averages and tables):
# their state must follow the model's own values.
POINT_STATE_CASES = [c.param for c in CASES if issubclass(c.cls, OutputPointOptimizer)]
# Checks that train several models per case run one IGT and each AM form by
# default.
_REPRESENTATIVE = {"igt-momentum-c0.5", "am1sgd-optionII-m3", "am1sgd-optionI-m3", "am2sgd-optionII-m3"}
POINT_STATE_SLICE = case_params([p.values[0] for p in POINT_STATE_CASES], _REPRESENTATIVE)
OUTPUT_POINT_SLICE = case_params([p.values[0] for p in OUTPUT_POINT_CASES], _REPRESENTATIVE)


def test_every_output_point_optimizer_is_in_the_suite():
    assert {c.values[0].cls for c in OUTPUT_POINT_CASES} >= {km.IGT, km.AM1SGD, km.AM2SGD}
    assert {c.values[0].kwargs.get("option") for c in POINT_STATE_CASES} >= {"I", "II"}


@pytest.mark.parametrize("case", OUTPUT_POINT_SLICE)
@pytest.mark.parametrize("dtype", ["float16", "bfloat16", "float32"])
def test_swap_is_exact_and_leaves_training_state_unchanged(case, dtype):
    params = initial_params(SHAPE_LIST)
    variables = make_variables(params, dtype)
    optimizer = case.make()
    optimizer.build(variables)
    for grads in gradient_stream(SHAPE_LIST, 7):
        optimizer.apply([tf.constant(g, dtype=dtype) for g in grads], variables)
    training = [v.numpy() for v in variables]
    answer = [a.numpy() for a in optimizer.evaluation_weights(variables)]
    state = [v.numpy() for v in optimizer.variables]
    assert not np.array_equal(training[0], answer[0])

    # Swapped in and back, and handed over at the end of `fit` and taken back.
    for load in (optimizer.load_evaluation_weights, optimizer.finalize_variable_values):
        load(variables)
        assert optimizer.evaluation_weights_in_model
        for v, a in zip(variables, answer):
            np.testing.assert_array_equal(v.numpy(), a)
        for a, wanted in zip(optimizer.evaluation_weights(variables), answer):
            np.testing.assert_array_equal(a.numpy(), wanted)
        optimizer.restore_training_weights(variables)
        assert not optimizer.evaluation_weights_in_model
        for v, t in zip(variables, training):
            np.testing.assert_array_equal(v.numpy(), t)
        for after, before in zip(optimizer.variables, state):
            if after.path.endswith("point_state"):
                # The digest of what was handed over is a record, not training state.
                after, before = after.numpy()[:2], before[:2]
            elif "stash" in after.path:
                continue
            np.testing.assert_array_equal(np.asarray(after), before, err_msg=str(after))
        np.testing.assert_array_equal(optimizer.evaluation_weights(variables)[0].numpy(), answer[0])


def fit_in_pieces_reference(case, weights, x, y, pieces, batch_size=16):
    """The answer after several `fit` calls, each of `epochs` epochs.

    `pieces` lists (epochs, how) for each call; `how` says what happens in
    front of it: "continue" (the model as the previous `fit` left it, holding
    the answer: the first gradient is taken at the answer, the step goes on
    from the training point), "swap_back" (`SwapEvaluationWeights` puts the
    training point back: the run goes on exactly), or new weights set from
    outside (every variable's run starts afresh from them).
    """
    semantics = KerasSemantics(case.make_reference(), case.learning_rate)
    params = [np.asarray(w, np.float64) for w in weights]
    for index, (epochs, how) in enumerate(pieces):
        gradient_point = None
        if index > 0 and isinstance(how, list):
            semantics.reference.restart()
            params = [np.asarray(w, np.float64) for w in how]
        elif index > 0 and how == "continue":
            gradient_point = semantics.output_point(params)
        for _ in range(epochs):
            for start in range(0, len(x), batch_size):
                xb, yb = x[start : start + batch_size], y[start : start + batch_size]
                at = params if gradient_point is None else gradient_point
                params = semantics.step(params, least_squares_gradients(at, xb, yb))
                gradient_point = None
    return semantics.output_point(params)


def _assert_weights(actual, expected, rtol=1e-10):
    for a, e in zip(actual, expected, strict=True):
        np.testing.assert_allclose(a, e, rtol=rtol, atol=1e-14)


# AM1-SGD has a branch-free form under XLA and branches without: both run.
_PIECES_DEFAULT_RUN = {
    ("igt-momentum-c0.5", False), ("am1sgd-optionII-m3", False), ("am1sgd-optionII-m3", True),
    ("am1sgd-optionI-m3", True), ("am2sgd-optionII-m3", True),
}


@pytest.mark.parametrize(
    "case, jit_compile",
    [
        pytest.param(
            c.values[0], jit, id=f"{c.id}-{'xla' if jit else 'no_xla'}",
            marks=[] if (c.id, jit) in _PIECES_DEFAULT_RUN else [pytest.mark.slow],
        )
        for c in POINT_STATE_CASES
        for jit in (False, True)
    ],
)
def test_fit_in_pieces_continues_the_run(case, jit_compile):
    """`fit` ends with the answer in the model and keeps all state: the next
    `fit` goes on exactly with `SwapEvaluationWeights`, and without it takes
    only its first gradient at the answer; weights set in between win."""
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    model = case_model(case)
    initial = model.get_weights()
    model.compile(optimizer=case.make(), loss="mse", jit_compile=jit_compile)
    swap = km.callbacks.SwapEvaluationWeights()
    _fit(model, x, y, 2)
    _fit(model, x, y, 1, [swap])
    _fit(model, x, y, 1)
    new_weights = [w * 0.5 + 0.25 for w in model.get_weights()]
    model.set_weights(new_weights)
    _fit(model, x, y, 1)
    model.set_weights(model.get_weights())  # the values handed over, set again: no change
    _fit(model, x, y, 1, [swap])
    expected = fit_in_pieces_reference(
        case, initial, x, y, [(2, None), (1, "swap_back"), (1, "continue"), (1, new_weights), (1, "swap_back")]
    )
    _assert_weights(model.get_weights(), expected)

    # Uninterrupted: exactly the same as one `fit`, also across a `.keras` file.
    one = case_model(case)
    one.compile(optimizer=case.make(), loss="mse", jit_compile=jit_compile)
    _fit(one, x, y, 3)
    pieces = case_model(case)
    pieces.compile(optimizer=case.make(), loss="mse", jit_compile=jit_compile)
    _fit(pieces, x, y, 1, [swap])
    path = os.path.join(tempfile.mkdtemp(), "pieces.keras")
    pieces.save(path)
    pieces = keras.models.load_model(path)
    _fit(pieces, x, y, 1, [swap])
    _fit(pieces, x, y, 1, [swap])
    for a, b in zip(pieces.get_weights(), one.get_weights(), strict=True):
        np.testing.assert_array_equal(a, b)


class _UnusedWeight(keras.layers.Layer):
    """A trainable weight the loss does not depend on (gets no gradient)."""

    def build(self, input_shape):
        self.unused = self.add_weight(shape=(2,), initializer="ones", name="unused")

    def call(self, inputs):
        return inputs


@pytest.mark.parametrize(
    "case",
    case_params(CASES, {"igt-momentum-c0.5", "am1sgd-optionII-m3", "msvag-mu0.9-minibatch"}),
)
def test_weight_without_gradient_is_left_alone(case):
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), _UnusedWeight(), keras.layers.Dense(1)])
    if case.wrap_model:
        model = case.wrap_model(model)
    model.compile(optimizer=case.make(), loss="mse")
    _fit(model, x, y, 2, [km.callbacks.SwapEvaluationWeights()])
    unused = next(w for w in model.trainable_variables if "unused" in w.path)
    np.testing.assert_array_equal(unused.numpy(), [1.0, 1.0])
    answer = model.optimizer.evaluation_weights([unused])[0]
    np.testing.assert_array_equal(answer.numpy(), [1.0, 1.0])
    _fit(model, x, y, 1)
    np.testing.assert_array_equal(unused.numpy(), [1.0, 1.0])


@pytest.fixture(scope="module")
def saved_linear_model(tmp_path_factory):
    """A SavedModel of y = x·w + b whose variables have TensorFlow names
    ("dense/kernel:0"), as `keras.layers.TFSMLayer` loads them."""
    module = tf.Module()
    module.kernel = tf.Variable(np.zeros((3, 1), "float32"), name="dense/kernel")
    module.bias = tf.Variable(np.zeros((1,), "float32"), name="dense/bias")
    module.forward = tf.function(
        lambda x: tf.matmul(x, module.kernel) + module.bias,
        input_signature=[tf.TensorSpec((None, 3), tf.float32)],
    )
    path = str(tmp_path_factory.mktemp("saved") / "linear")
    tf.saved_model.save(module, path)
    return path


@pytest.mark.parametrize(
    "case",
    case_params([c for c in CASES if c.wrap_model is None], {"expectigrad-beta0.9-sparse_counter", "igt-momentum-c0.5", "am2sgd-optionII-m3"}),
)
def test_trains_the_weights_of_a_saved_model_layer(case, saved_linear_model):
    x, y = least_squares_data()
    layer = keras.layers.TFSMLayer(saved_linear_model, call_endpoint="forward", trainable=True)
    model = keras.Sequential([keras.Input((3,)), layer])
    model.compile(optimizer=case.make(), loss="mse")
    _fit(model, x.astype("float32"), y.astype("float32"), 2)
    assert int(model.optimizer.iterations) == 8
    kernel = next(w for w in layer.trainable_weights if "kernel" in w.name)
    assert np.all(np.isfinite(kernel.numpy())) and np.any(kernel.numpy() != 0)


@pytest.mark.parametrize("case", POINT_STATE_SLICE)
@pytest.mark.parametrize(
    "constraint, satisfied",
    [
        (keras.constraints.NonNeg(), lambda w: np.all(w >= 0)),
        (keras.constraints.MaxNorm(0.5, axis=0), lambda w: np.all(np.linalg.norm(w, axis=0) <= 0.5 + 1e-12)),
    ],
    ids=["non_neg", "max_norm"],
)
def test_answer_satisfies_the_weight_constraint(case, constraint, satisfied):
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    y = -3 * y  # the unconstrained solution breaks both constraints
    keras.utils.set_random_seed(0)
    model = keras.Sequential(
        [keras.Input((3,)), keras.layers.Dense(1, kernel_constraint=constraint)]
    )
    model.compile(optimizer=case.make(), loss="mse")
    answers = []

    class Answers(keras.callbacks.Callback):
        def on_train_batch_end(self, batch, logs=None):
            answers.append(self.model.optimizer.evaluation_weights(self.model.trainable_variables)[0].numpy())

    _fit(model, x, y, 3, [Answers()])
    assert all(satisfied(a) for a in answers)
    assert satisfied(model.trainable_variables[0].numpy())


@pytest.mark.parametrize("case", OUTPUT_POINT_SLICE)
def test_file_saved_with_the_answer_in_reloads_and_resumes(case, tmp_path):
    """README's recipe: `SwapEvaluationWeights(swap_on_epoch=True)` before
    `ModelCheckpoint`. The file holds the answer as model weights and says so."""
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    swap = km.callbacks.SwapEvaluationWeights(swap_on_epoch=True)
    path = tmp_path / "epoch{epoch}.keras"
    model = case_model(case)
    model.compile(optimizer=case.make(), loss="mse")
    _fit(model, x, y, 3, [swap, keras.callbacks.ModelCheckpoint(str(path))])
    uninterrupted = model.get_weights()

    restored = keras.models.load_model(str(tmp_path / "epoch1.keras"))
    answer = [a.numpy() for a in restored.optimizer.evaluation_weights(restored.trainable_variables)]
    for a, w in zip(answer, restored.get_weights()):
        np.testing.assert_array_equal(a, w)
    _fit(restored, x, y, 2, [km.callbacks.SwapEvaluationWeights()])
    for a, b in zip(restored.get_weights(), uninterrupted):
        np.testing.assert_array_equal(a, b)


@pytest.mark.parametrize("case", OUTPUT_POINT_SLICE)
def test_interrupted_validation_leaves_a_consistent_state(case):
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    swap = km.callbacks.SwapEvaluationWeights()
    one = case_model(case)
    one.compile(optimizer=case.make(), loss="mse")
    _fit(one, x, y, 2)

    class Interrupt(keras.callbacks.Callback):
        def on_test_batch_end(self, batch, logs=None):
            raise KeyboardInterrupt

    model = case_model(case)
    model.compile(optimizer=case.make(), loss="mse")
    with pytest.raises(KeyboardInterrupt):
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0,
                  validation_data=(x, y), callbacks=[swap, Interrupt()])
    answer = [a.numpy() for a in model.optimizer.evaluation_weights(model.trainable_variables)]
    for a, w in zip(answer, model.get_weights()):  # the answer is in the model, and known to be
        np.testing.assert_array_equal(a, w)
    model.evaluate(x, y, verbose=0, callbacks=[swap])
    for a, w in zip(answer, model.get_weights()):
        np.testing.assert_array_equal(a, w)
    _fit(model, x, y, 1, [swap])
    for a, b in zip(model.get_weights(), one.get_weights()):
        np.testing.assert_array_equal(a, b)


# ------------------------------------------------ 10. MirroredStrategy


@case_param
@pytest.mark.strategy_without_fit
def test_custom_loop_under_a_strategy_asks_to_build_first(case, mirrored_strategy):
    strategy = mirrored_strategy
    with strategy.scope():
        variables = make_variables(initial_params(SHAPE_LIST[:2]), "float32")
        optimizer = case.make()

    def replica_step(scale):
        # Keras would fail here with "You must feed a value for placeholder
        # tensor 'cond/else/...'" (keras-team/keras#23085).
        gradients = [scale * tf.ones(v.shape) for v in variables]
        if case.statistics is not None:
            optimizer.add_minibatch_statistics(gradients, 4.0, variables)
        optimizer.apply(gradients, variables)

    step = tf.function(lambda scale: strategy.run(replica_step, args=(scale,)))
    with pytest.raises(ValueError, match=r"strategy.scope\(\): optimizer.build"):
        step(tf.constant(0.5))


def _fit_under(strategy, case, x, y, jit_compile):
    with strategy.scope():
        model = case_model(case)
        model.compile(optimizer=case.make(), loss="mse", jit_compile=jit_compile)
    if not issubclass(case.cls, OutputPointOptimizer):
        _fit(model, x, y, 3)
        return model
    _fit(model, x, y, 2)
    # A second `fit` takes the model back from the first (the answer in it),
    # one of its variables changed in between.
    model.trainable_variables[-1].assign(np.full(model.trainable_variables[-1].shape, 0.25))
    _fit(model, x, y, 1)
    return model


@case_param
def test_mirrored_strategy_matches_single_device(case, mirrored_strategy):
    # fit(jit_compile=True) under MirroredStrategy over logical CPU devices
    # fails for Keras's own optimizers too (XLA places the step on one
    # device), so this runs the strategy's own per-replica graphs.
    jit_compile = False
    keras.config.set_floatx("float64")
    x, y = least_squares_data()
    single = _fit_under(tf.distribute.OneDeviceStrategy("/cpu:0"), case, x, y, jit_compile)
    strategy = mirrored_strategy
    mirrored = _fit_under(strategy, case, x, y, jit_compile)
    for a, b in zip(mirrored.get_weights(), single.get_weights()):
        np.testing.assert_allclose(a, b, rtol=1e-10)
    for variable in mirrored.weights + mirrored.optimizer.variables:
        replicas = strategy.experimental_local_results(variable.value)
        assert len(replicas) == 2
        np.testing.assert_array_equal(replicas[0].numpy(), replicas[1].numpy())
