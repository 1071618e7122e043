"""AM1-SGD and AM2-SGD's own properties (Zhou, Jin, Ding & Cheng, 2020)."""

import contextlib

import numpy as np
import pytest
import keras
import tensorflow as tf

import keras_momenta as km
from keras_momenta.amortized_nesterov import point_index
from tests.harness import gradient_stream, initial_params, per_variable_fit
from tests.references.amortized_nesterov import AM1Reference, AM2Reference
from tests.references.amortized_nesterov import point_index as spec_index

LR, BETA = 2.0**-5, 0.875  # exact in float32, where Keras keeps them
SHAPES = [(4, 3), (5,)]


def _stream(steps, seed=0):
    """The harness's gradients, starting with a nonzero one: the first step
    initialises the averages and the table and must move the point."""
    return gradient_stream(SHAPES, steps + 3, seed=seed)[3:]


def _run(optimizer, stream, params, on_step=None, jit_compile=False):
    """Apply `stream` with a traced step; return per-step values and answers."""
    variables = [keras.Variable(p, dtype="float64") for p in params]
    optimizer.build(variables)
    step = tf.function(lambda g: optimizer.apply(g, variables), jit_compile=jit_compile)
    values, answers = [], []
    for t, grads in enumerate(stream):
        if on_step is not None:
            on_step(t, optimizer, variables)
        step([tf.constant(g) for g in grads])
        values.append([v.numpy() for v in variables])
        answers.append([a.numpy() for a in optimizer.evaluation_weights(variables)])
    return values, answers, variables


def _assert_close(actual, expected, rtol=1e-12, atol=1e-13):
    # atol: a few float64 roundings of values up to ~20 near a zero crossing.
    for t, (a_step, e_step) in enumerate(zip(actual, expected, strict=True)):
        for a, e in zip(a_step, e_step, strict=True):
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"step {t + 1}")


def _keras_nesterov(stream, params):
    """Keras SGD(momentum=β, nesterov=True): x per step and x before each step."""
    variables = [keras.Variable(p, dtype="float64") for p in params]
    sgd = keras.optimizers.SGD(LR, momentum=BETA, nesterov=True)
    sgd.build(variables)
    step = tf.function(lambda g: sgd.apply(g, variables))
    after, before = [], []
    for grads in stream:
        before.append([v.numpy() for v in variables])
        step([tf.constant(g) for g in grads])
        after.append([v.numpy() for v in variables])
    return after, before


# ------------------------------------------------------- m = 1 is Nesterov


@pytest.mark.parametrize("cls", [km.AM1SGD, km.AM2SGD])
def test_m1_option_I_is_keras_nesterov_sgd(cls):
    stream, params = _stream(100), initial_params(SHAPES)
    values, answers, _ = _run(cls(LR, BETA, amortization=1, option="I"), stream, params)
    expected, _ = _keras_nesterov(stream, params)
    _assert_close(values, expected)
    _assert_close(answers, expected)


@pytest.mark.parametrize("cls", [km.AM1SGD, km.AM2SGD])
def test_m1_option_II_is_the_original_nesterov_sequence(cls):
    """OM-SGD: the answer is yₖ₊₁ = xₖ − η∇f(xₖ), with xₖ Keras's Nesterov iterate."""
    stream, params = _stream(100), initial_params(SHAPES)
    values, answers, _ = _run(cls(LR, BETA, amortization=1, option="II"), stream, params)
    after, before = _keras_nesterov(stream, params)
    y = [[x - LR * g for x, g in zip(xs, grads)] for xs, grads in zip(before, stream)]
    _assert_close(values, after)
    _assert_close(answers, y)


# --------------------------------------------------------------- AM1-SGD


@pytest.mark.parametrize("m", [2, 4])
def test_am1_option_II_is_the_mean_of_the_last_completed_block(m):
    """x̃ is the mean of the last m iterates xₖ − η∇f(xₖ) of a completed block
    (before the block's momentum is added); x₀ until the first block ends."""
    stream, params = _stream(30), initial_params(SHAPES)
    optimizer = km.AM1SGD(LR, BETA, amortization=m, option="II")
    values, answers, _ = _run(optimizer, stream, params)
    previous = [params] + values[:-1]
    iterates = [[x - LR * g for x, g in zip(xs, grads)] for xs, grads in zip(previous, stream)]
    for k, answer in enumerate(answers):
        completed = (k + 1) // m
        if completed == 0:
            wanted = params
        else:
            block = iterates[(completed - 1) * m : completed * m]
            wanted = [np.mean(parts, axis=0) for parts in zip(*block)]
        for a, w in zip(answer, wanted):
            np.testing.assert_allclose(a, w, rtol=1e-12, atol=1e-14, err_msg=f"step {k + 1}")


@pytest.mark.parametrize("m", [2, 7, 20])
def test_am1_lower_cost_form_equals_algorithm_2(m):
    """The class keeps the block's sum, not x̃⁺, and does the block-end work
    in a branch; over 1000 steps it equals Algorithm 2 written literally."""
    stream, params = _stream(1000, seed=5), initial_params(SHAPES)
    reference = AM1Reference(BETA, m, "II")
    expected, expected_answers, current = [], [], params
    for grads in stream:
        current = reference.step(current, grads, LR)
        expected.append(current)
        expected_answers.append(reference.output_point())
    optimizer = km.AM1SGD(LR, BETA, amortization=m, option="II")
    values, answers, _ = _run(optimizer, stream, params, jit_compile=True)
    _assert_close(values, expected, rtol=1e-10, atol=1e-12)
    _assert_close(answers, expected_answers, rtol=1e-10, atol=1e-12)


# --------------------------------------------------------------- AM2-SGD


def test_point_index_matches_the_documented_hash_and_compiles_under_xla():
    steps = np.array([0, 1, 2, 99, 2**31 - 1, 2**32, 2**32 + 7, 3 * 2**40 + 5], np.int64)
    for seed in (0, 1, 2**32 - 1):
        for m in (2, 5, 7):
            compiled = tf.function(lambda s: point_index(seed, s, m), jit_compile=True)
            got = [int(compiled(tf.constant(k, tf.int64))) for k in steps]
            assert got == [spec_index(seed, int(k), m) for k in steps]


def test_index_sequence_is_uniform_and_set_by_the_seed():
    m, steps = 5, 20_000
    ks = tf.range(steps, dtype=tf.int64)
    sequences = {seed: point_index(seed, ks, m).numpy() for seed in (0, 1, 12345)}
    for sequence in sequences.values():
        counts = np.bincount(sequence, minlength=m)
        # Binomial std of a count is √(n·p(1−p)) ≈ 57: allow 5 std.
        assert np.all(np.abs(counts - steps / m) < 5 * 57), counts
        # Consecutive indices are independent: repeats about 1/m of the time.
        assert abs(np.mean(sequence[1:] == sequence[:-1]) - 1 / m) < 0.02
    assert not np.array_equal(sequences[0], sequences[1])
    assert np.array_equal(point_index(0, ks, m).numpy(), sequences[0])


def test_am2_writes_the_same_row_of_every_variable():
    stream, params = _stream(40, seed=3), initial_params(SHAPES)
    stream = [[g + 1.0 for g in grads] for grads in stream]  # every row changes
    optimizer = km.AM2SGD(LR, BETA, amortization=4, seed=99)
    tables = []
    _run(optimizer, stream, params, on_step=lambda t, opt, _: tables.append([v.numpy() for v in opt._tables]))
    tables.append([v.numpy() for v in optimizer._tables])
    # tables[k] is the table after k steps; the first step fills it with x₀.
    j0 = spec_index(99, 0, 4)
    for table, start in zip(tables[1], params):
        assert [j for j in range(4) if not np.array_equal(table[j], start)] == [j0]
    for k in range(2, len(tables)):
        changed = [
            [j for j in range(4) if not np.array_equal(after[j], before[j])]
            for before, after in zip(tables[k - 1], tables[k])
        ]
        assert changed == [[spec_index(99, k - 1, 4)]] * len(SHAPES), f"step {k}"


def _distributed_run(strategy, optimizer, variable, per_replica_grads):
    """Custom loop under `strategy`; returns each replica's index per step."""

    @tf.function
    def step(grads):
        def replica_fn(g):
            used = optimizer.point_index(optimizer.iterations)
            optimizer.apply([g], [variable])
            return used

        return strategy.run(replica_fn, args=(grads,))

    seen = []
    for grads in per_replica_grads:
        value = strategy.experimental_distribute_values_from_function(
            lambda context, grads=grads: tf.constant(grads[context.replica_id_in_sync_group])
        )
        seen.append([int(i) for i in strategy.experimental_local_results(step(value))])
    return seen


def test_am2_index_is_identical_on_both_replicas_for_100_steps(mirrored_strategy):
    strategy = mirrored_strategy
    rng = np.random.default_rng(4)
    start = rng.normal(size=(6,))
    grads = [rng.normal(size=(2, 6)) for _ in range(100)]
    with strategy.scope():
        variable = keras.Variable(start, dtype="float64")
        optimizer = km.AM2SGD(LR, BETA, amortization=5)  # seed drawn at construction
        optimizer.build([variable])
    seen = _distributed_run(strategy, optimizer, variable, grads)
    wanted = [spec_index(optimizer.seed, k, 5) for k in range(100)]
    assert [replicas[0] for replicas in seen] == wanted
    assert [replicas[1] for replicas in seen] == wanted
    for state in [variable] + optimizer.variables:
        copies = strategy.experimental_local_results(state.value)
        np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    # Gradients are summed across replicas before the update.
    reference = AM2Reference(BETA, 5, "II", seed=optimizer.seed)
    params = [start]
    for g in grads:
        params = reference.step(params, [g.sum(axis=0)], LR)
    np.testing.assert_allclose(variable.numpy(), params[0], rtol=1e-10)


def test_am2_index_sequence_survives_checkpoints(tmp_path):
    """Restored into a new optimizer (whose own seed differs), the sequence and
    the trajectory continue exactly: the seed is optimizer state."""
    stream, params = _stream(100, seed=6), initial_params(SHAPES)

    def steps(optimizer, variables, part):
        step = tf.function(lambda g: optimizer.apply(g, variables))
        used = []
        for grads in part:
            used.append(int(optimizer.point_index(optimizer.iterations)))
            step([tf.constant(g) for g in grads])
        return used

    variables = [keras.Variable(p, dtype="float64") for p in params]
    optimizer = km.AM2SGD(LR, BETA, amortization=5, seed=None)
    optimizer.build(variables)
    first = steps(optimizer, variables, stream[:50])
    path = tf.train.Checkpoint(variables=variables, optimizer=optimizer).save(str(tmp_path / "c"))
    uninterrupted = first + steps(optimizer, variables, stream[50:])

    new_variables = [keras.Variable(np.zeros_like(p), dtype="float64") for p in params]
    restored = km.AM2SGD(LR, BETA, amortization=5, seed=None)
    assert restored.seed != optimizer.seed
    restored.build(new_variables)
    tf.train.Checkpoint(variables=new_variables, optimizer=restored).restore(path).assert_consumed()
    resumed = first + steps(restored, new_variables, stream[50:])
    assert resumed == uninterrupted == [spec_index(optimizer.seed, k, 5) for k in range(100)]
    for a, b in zip(new_variables, variables):
        np.testing.assert_array_equal(a.numpy(), b.numpy())


def test_am2_seed_round_trips_through_a_keras_file(tmp_path):
    keras.utils.set_random_seed(0)
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer=km.AM2SGD(LR, BETA, amortization=5), loss="mse")
    model.fit(np.ones((8, 3)), np.ones((8, 1)), epochs=1, verbose=0)
    model.save(tmp_path / "m.keras")
    loaded = keras.models.load_model(tmp_path / "m.keras")
    assert loaded.optimizer.seed == model.optimizer.seed
    ks = tf.range(100, dtype=tf.int64)
    np.testing.assert_array_equal(
        loaded.optimizer.point_index(ks).numpy(), model.optimizer.point_index(ks).numpy()
    )


def test_am2_option_I_is_documented_as_unstable():
    assert "unstable" in km.AM2SGD.__doc__


# --------------------------------------------------------------- restarts


def _reference_run(reference, stream, params, restart_at):
    answers, values, current = [], [], params
    for t, grads in enumerate(stream):
        if t in restart_at:
            reference.restart()
        current = reference.step(current, grads, LR)
        values.append(current)
        answers.append(reference.output_point())
    return values, answers


@pytest.mark.parametrize(
    "make, reference",
    [
        (lambda: km.AM1SGD(LR, BETA, amortization=3), lambda: AM1Reference(BETA, 3, "II")),
        (lambda: km.AM2SGD(LR, BETA, amortization=3, seed=7), lambda: AM2Reference(BETA, 3, "II", 7)),
    ],
    ids=["am1", "am2"],
)
def test_restart_starts_afresh_at_the_next_step(make, reference):
    stream, params = _stream(30, seed=8), initial_params(SHAPES)
    restart_at = {7, 8, 20}  # mid-block, twice in a row, at a block boundary
    before_step = []

    def on_step(t, optimizer, variables):
        if t in restart_at:
            optimizer.restart()
            before_step.append(optimizer.evaluation_weights(variables))

    values, answers, _ = _run(make(), stream, params, on_step=on_step)
    expected_values, expected_answers = _reference_run(reference(), stream, params, restart_at)
    _assert_close(values, expected_values, rtol=1e-10, atol=1e-12)
    _assert_close(answers, expected_answers, rtol=1e-10, atol=1e-12)
    # Between a restart and the next step the answer is the current point.
    for t, answer in zip(sorted(restart_at), before_step):
        for a, v in zip(answer, values[t - 1]):
            np.testing.assert_array_equal(a.numpy(), v)


def test_pending_restart_survives_a_checkpoint(tmp_path):
    stream, params = _stream(20, seed=9), initial_params(SHAPES)
    variables = [keras.Variable(p, dtype="float64") for p in params]
    optimizer = km.AM1SGD(LR, BETA, amortization=4)
    optimizer.build(variables)
    for grads in stream[:6]:
        optimizer.apply([tf.constant(g) for g in grads], variables)
    optimizer.restart()
    path = tf.train.Checkpoint(variables=variables, optimizer=optimizer).save(str(tmp_path / "c"))
    restored = km.AM1SGD(LR, BETA, amortization=4)
    restored.build(variables)
    tf.train.Checkpoint(variables=variables, optimizer=restored).restore(path).assert_consumed()
    for grads in stream[6:]:
        restored.apply([tf.constant(g) for g in grads], variables)
    expected, _ = _reference_run(AM1Reference(BETA, 4, "II"), stream, params, {6})
    for v, e in zip(variables, expected[-1]):
        np.testing.assert_allclose(v.numpy(), e, rtol=1e-10)


AMORTIZED = [
    (lambda option: km.AM1SGD(LR, BETA, amortization=3, option=option),
     lambda option, k: AM1Reference(BETA, 3, option)),
    (lambda option: km.AM2SGD(LR, BETA, amortization=3, option=option, seed=11),
     lambda option, k: _am2_reference_at(option, k)),
]


def _am2_reference_at(option, k):
    """AM2's index sequence is the optimizer's: a variable starting at step k
    draws jₖ, jₖ₊₁, ... like every other variable."""
    reference = AM2Reference(BETA, 3, option, seed=11)
    reference.k = k
    return reference


@pytest.mark.parametrize("option", ["I", "II"])
@pytest.mark.parametrize("make, reference", AMORTIZED, ids=["am1", "am2"])
def test_a_variable_whose_first_gradient_comes_late_starts_its_run_then(make, reference, option):
    """Its averages and table start at its value then, not at zero."""
    stream, params = _stream(25, seed=4), initial_params(SHAPES)
    late = 7
    optimizer = make(option)
    variables = [keras.Variable(p) for p in params]
    references = [reference(option, 0), reference(option, late)]
    expected = [np.array(p) for p in params]
    for t, grads in enumerate(stream):
        given = [grads[0], grads[1] if t >= late else None]
        optimizer.apply([None if g is None else tf.constant(g) for g in given], variables)
        for i, g in enumerate(given):
            if g is not None:
                expected[i] = references[i].step([expected[i]], [g], LR)[0]
        for v, e in zip(variables, expected):
            np.testing.assert_allclose(v.numpy(), e, rtol=1e-10, atol=1e-12, err_msg=f"step {t}")
    for answer, r in zip(optimizer.evaluation_weights(variables), references):
        np.testing.assert_allclose(answer.numpy(), r.output_point()[0], rtol=1e-10, atol=1e-12)


@pytest.mark.parametrize("option", ["I", "II"])
@pytest.mark.parametrize("make, reference", AMORTIZED, ids=["am1", "am2"])
def test_assigning_one_variable_between_fits_restarts_only_its_run(make, reference, option):
    keras.config.set_floatx("float64")
    x, y = _data()
    model = _model(lambda: make(option))
    params = [np.asarray(w, np.float64) for w in model.get_weights()]
    references = [reference(option, 0), reference(option, 0)]
    model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
    kernel = np.array([[0.5], [-1.0], [0.25]])
    model.trainable_variables[0].assign(kernel)
    model.fit(x, y, batch_size=16, epochs=1, shuffle=False, verbose=0)

    params = per_variable_fit(references, params, x, y, 2, LR)
    references[0].restart()
    # The kernel restarts at its new value; the bias goes on from its
    # training point, its first gradient taken at the answer the model held.
    answer = [kernel, references[1].output_point()[0]]
    per_variable_fit(references, [kernel, params[1]], x, y, 1, LR, first_gradient_at=answer)
    for a, r in zip(model.get_weights(), references):
        np.testing.assert_allclose(a, r.output_point()[0], rtol=1e-10)


# ------------------------------------------------------- restart callback


def _data(n=64):
    rng = np.random.default_rng(0)
    x = rng.normal(size=(n, 3))
    return x, x @ rng.normal(size=(3, 1)) + 0.1 * rng.normal(size=(n, 1))


def _model(optimizer, strategy=None):
    with strategy.scope() if strategy else contextlib.nullcontext():
        keras.utils.set_random_seed(0)
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=optimizer(), loss="mse")
    return model


def _fit_reference(reference, model_weights, x, y, epochs, lr_at, restart_at, batch=16):
    params = [np.asarray(w, np.float64) for w in model_weights]
    step = 0
    for _ in range(epochs):
        for start in range(0, len(x), batch):
            if step in restart_at:
                reference.restart()
            xb, yb = x[start : start + batch], y[start : start + batch]
            residual = xb @ params[0] + params[1] - yb
            grads = [2 * xb.T @ residual / len(xb), 2 * residual.sum(axis=0) / len(xb)]
            params = reference.step(params, grads, lr_at(step))
            step += 1
    return reference.output_point()


def _schedule():
    values = [2.0**-4, 2.0**-7, 2.0**-9]
    return keras.optimizers.schedules.PiecewiseConstantDecay([6, 13], values), (
        lambda step: values[(step > 6) + (step > 13)]
    )


@pytest.mark.parametrize(
    "make, reference",
    [
        (lambda s: km.AM1SGD(s, BETA, amortization=3), lambda: AM1Reference(BETA, 3, "II")),
        (lambda s: km.AM2SGD(s, BETA, amortization=3, seed=1), lambda: AM2Reference(BETA, 3, "II", 1)),
    ],
    ids=["am1", "am2"],
)
def test_callback_restarts_at_step_schedule_drops(make, reference):
    keras.config.set_floatx("float64")
    x, y = _data()
    schedule, lr_at = _schedule()
    model = _model(lambda: make(schedule))
    initial = model.get_weights()
    callback = km.callbacks.RestartOnLearningRateDrop()
    model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0, callbacks=[callback])
    assert callback.restart_steps == [7, 14]
    expected = _fit_reference(reference(), initial, x, y, 5, lr_at, {7, 14})
    for a, b in zip(model.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-10)


@pytest.mark.parametrize("jit_compile", [False, True])
def test_callback_restarts_at_the_exact_step_with_several_steps_per_execution(jit_compile):
    # Callbacks run once per 3 steps here; the restart is decided in the step.
    keras.config.set_floatx("float64")
    x, y = _data()
    schedule, lr_at = _schedule()
    model = _model(lambda: km.AM2SGD(schedule, BETA, amortization=3, seed=4))
    model.compile(
        optimizer=model.optimizer, loss="mse", steps_per_execution=3, jit_compile=jit_compile
    )
    initial = model.get_weights()
    callback = km.callbacks.RestartOnLearningRateDrop()
    model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0, callbacks=[callback])
    assert callback.restart_steps == [7, 14]
    expected = _fit_reference(AM2Reference(BETA, 3, "II", 4), initial, x, y, 5, lr_at, {7, 14})
    for a, b in zip(model.get_weights(), expected):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_callback_reads_nothing_between_the_steps_of_an_epoch():
    callback = km.callbacks.RestartOnLearningRateDrop
    for hook in ("on_train_batch_begin", "on_train_batch_end", "on_batch_begin", "on_batch_end"):
        assert getattr(callback, hook) is getattr(keras.callbacks.Callback, hook), hook


def test_reference_rate_survives_a_checkpoint(tmp_path):
    # Under a smooth decay the restart comes when the rate has halved since
    # the last one; a reference rate lost on reloading would move it later.
    keras.config.set_floatx("float64")
    x, y = _data()
    decay = keras.optimizers.schedules.ExponentialDecay(2.0**-4, decay_steps=1, decay_rate=0.9)
    path = str(tmp_path / "mid_run.keras")

    def fit(model, epochs, *extra):
        callback = km.callbacks.RestartOnLearningRateDrop()
        model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=[callback, *extra])
        return callback.restart_steps

    class SaveAfterFirstEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 0:
                self.model.save(path)

    model = _model(lambda: km.AM1SGD(decay, BETA, amortization=3, option="II"))
    assert fit(model, 4, SaveAfterFirstEpoch()) == [7, 14]
    restored = keras.models.load_model(path)
    assert fit(restored, 3) == [7, 14]
    for a, b in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(a, b)
    assert restored.optimizer.restart_record() == (2, [7, 14])


def test_restart_on_rate_drop_checks_its_factor():
    optimizer = km.AM1SGD(0.1, BETA, amortization=3)
    for factor in (0, 1, -0.5, "0.5"):
        with pytest.raises(ValueError, match="`factor`"):
            optimizer.restart_on_rate_drop(factor)


def test_callback_follows_reduce_lr_on_plateau_and_schedulers():
    x, y = _data()
    # The plateau callback reduces by 0.7 at the end of every epoch from the
    # second on (no improvement can beat min_delta): 0.7 alone is no restart,
    # 0.49 of the peak is.
    model = _model(lambda: km.AM1SGD(0.1, BETA, amortization=3))
    restarter = km.callbacks.RestartOnLearningRateDrop()
    plateau = keras.callbacks.ReduceLROnPlateau("loss", factor=0.7, patience=0, min_delta=1e9)
    model.fit(x, y, batch_size=16, epochs=6, verbose=0, callbacks=[plateau, restarter])
    # Rates per epoch: 0.1, 0.1, 0.07, 0.049 (restart), 0.0343, 0.024 (restart).
    assert restarter.restart_steps == [12, 20]

    # A warm-up is no drop; the drop is measured from the peak.
    model = _model(lambda: km.AM2SGD(0.01, BETA, amortization=3))
    restarter = km.callbacks.RestartOnLearningRateDrop()
    rates = [0.01, 0.05, 0.1, 0.06, 0.04]
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch: rates[epoch])
    model.fit(x, y, batch_size=16, epochs=5, verbose=0, callbacks=[scheduler, restarter])
    assert restarter.restart_steps == [16]


def test_callback_restarts_once_per_halving_of_a_smooth_decay():
    x, y = _data()
    decay = keras.optimizers.schedules.ExponentialDecay(0.1, decay_steps=1, decay_rate=0.9)
    model = _model(lambda: km.AM1SGD(decay, BETA, amortization=3))
    restarter = km.callbacks.RestartOnLearningRateDrop()
    model.fit(x, y, batch_size=16, epochs=5, verbose=0, callbacks=[restarter])
    assert restarter.restart_steps == [7, 14]  # 0.9⁷ ≈ 0.48


def test_callback_restart_under_mirrored_strategy_matches_one_device(mirrored_strategy):
    keras.config.set_floatx("float64")
    x, y = _data()
    schedule, _ = _schedule()
    results = []
    for strategy in (
        tf.distribute.OneDeviceStrategy("/cpu:0"),
        mirrored_strategy,
    ):
        model = _model(lambda: km.AM2SGD(schedule, BETA, amortization=3, seed=2), strategy)
        callback = km.callbacks.RestartOnLearningRateDrop()
        model.fit(x, y, batch_size=16, epochs=5, shuffle=False, verbose=0, callbacks=[callback])
        assert callback.restart_steps == [7, 14]
        results.append(model.get_weights())
    for variable in model.weights + model.optimizer.variables:
        copies = strategy.experimental_local_results(variable.value)
        np.testing.assert_array_equal(copies[0].numpy(), copies[1].numpy())
    for a, b in zip(*results):
        np.testing.assert_allclose(a, b, rtol=1e-10)


def test_callback_leaves_other_optimizers_alone_and_checks_factor():
    x, y = _data()
    model = _model(lambda: keras.optimizers.SGD(0.1))
    scheduler = keras.callbacks.LearningRateScheduler(lambda epoch: 0.1 / (epoch + 1))
    model.fit(x, y, epochs=2, verbose=0, callbacks=[scheduler, km.callbacks.RestartOnLearningRateDrop()])
    for factor in (0, 1, 1.5, "0.5"):
        with pytest.raises(ValueError, match="`factor`"):
            km.callbacks.RestartOnLearningRateDrop(factor=factor)


# ------------------------------------------------------------ output point


def test_fit_reports_option_II_at_validation_and_ends_there():
    keras.config.set_floatx("float64")
    x, y = _data()
    model = _model(lambda: km.AM2SGD(2.0**-4, BETA, amortization=3, seed=5))
    initial = model.get_weights()
    history = model.fit(
        x, y, batch_size=16, epochs=3, shuffle=False, verbose=0, validation_data=(x, y),
        callbacks=[km.callbacks.SwapEvaluationWeights()],
    )
    answers = [
        _fit_reference(AM2Reference(BETA, 3, "II", 5), initial, x, y, epochs, lambda _: 2.0**-4, ())
        for epochs in (1, 2, 3)
    ]
    mse = [float(np.mean((x @ w[0] + w[1] - y) ** 2)) for w in answers]
    np.testing.assert_allclose(history.history["val_loss"], mse, rtol=1e-10)
    for a, b in zip(model.get_weights(), answers[-1]):
        np.testing.assert_allclose(a, b, rtol=1e-10)


@pytest.mark.parametrize(
    "cls, option, m, copies",
    [
        (km.AM1SGD, "I", 5, 2), (km.AM1SGD, "II", 5, 2), (km.AM1SGD, "II", 1, 1),
        (km.AM2SGD, "I", 5, 5), (km.AM2SGD, "II", 5, 6), (km.AM2SGD, "II", 1, 2),
    ],
)
def test_state_memory(cls, option, m, copies):
    variables = [keras.Variable(np.zeros(s)) for s in SHAPES]
    optimizer = cls(amortization=m, option=option)
    optimizer.build(variables)
    size = sum(int(np.prod(s)) for s in SHAPES)
    state = sum(int(np.prod(v.shape)) for v in optimizer.variables if v.dtype.startswith("float"))
    # + the learning rate, the restart factor and the reference rate
    assert state == copies * size + 3


def test_point_table_larger_than_memory_is_refused_naming_the_argument():
    optimizer = km.AM2SGD(amortization=2**30)
    with pytest.raises(ValueError, match=r"`amortization`=1073741824 needs 8e\+03 GiB"):
        optimizer.build([keras.Variable(np.zeros(1000))])
