"""The conformance checks that must hold on every Keras backend, run in a process of its own.

The backend is chosen when Keras is imported, so `tests/test_backends.py`
runs this module in a subprocess per backend:

    KERAS_BACKEND=jax JAX_ENABLE_X64=1 python -m tests.backend_checks --cases all

and reads the JSON it prints: one record per (case, check), with "passed",
"refused" (a clear `ValueError` that names the backend it needs) or
"failed" and the reason. The checks use the same registry cases and float64
NumPy references as `tests/test_conformance.py`, through `keras.ops` only:

* reference: 40 eager `apply` steps on every shape against the paper's
  reference (float64 at rtol 1e-10; with `--dtype float32`, the precision
  JAX runs in by default, to 1e-5 of the trajectory's scale);
* shared_arguments: the same with each argument all Keras optimizers take
  (clipping, loss scaling, gradient accumulation, EMA) against a NumPy
  model of Keras's semantics;
* no_gradient: a trainable weight without a gradient keeps its value
  through two `fit` calls and is its own answer;
* fit: `model.fit` (compiled by the backend) against the reference;
* resume: a `.keras` file saved mid-`fit`, reloaded and trained on, follows
  the uninterrupted run exactly;
* in_place (JAX): the update that `jax.jit` compiles (`stateless_apply`
  with the state donated, as Keras's JAX trainer runs it) copies no
  parameter-sized buffer;
* data_parallel (JAX, with two host devices): `fit` under
  `keras.distribution.DataParallel` equals single-device training with the
  same global batch.
"""

import argparse
import json
import os
import sys
import tempfile
import traceback

import numpy as np

# The precision of the checks: float64, or float32 where the backend has no
# 64-bit types (JAX without JAX_ENABLE_X64).
DTYPE = "float64"
# Relative tolerance against the float64 reference, elementwise in float64
# and against the trajectory's scale in float32.
RTOL = {"float64": 1e-10, "float32": 1e-5}


def _record(case, check, status, detail=""):
    return {"case": case.id, "check": check, "status": status, "detail": detail}


def _trajectory(optimizer, params, stream, statistics):
    import keras
    from keras import ops

    variables = [keras.Variable(p, dtype=DTYPE) for p in params]
    optimizer.build(variables)
    trajectory = []
    for t, grads in enumerate(stream):
        if statistics is not None:
            square_sums, batch_size = statistics[t]
            optimizer.add_minibatch_statistics(
                [ops.convert_to_tensor(s, DTYPE) for s in square_sums], batch_size, variables
            )
        optimizer.apply([ops.convert_to_tensor(g, DTYPE) for g in grads], variables)
        trajectory.append([np.asarray(ops.convert_to_numpy(v), np.float64) for v in variables])
    return trajectory, variables


def _assert_close(actual, expected, scale, label):
    rtol, atol = (RTOL[DTYPE], 1e-14 * scale) if DTYPE == "float64" else (0, RTOL[DTYPE] * scale)
    for t, (a_step, e_step) in enumerate(zip(actual, expected)):
        for a, e in zip(a_step, e_step):
            np.testing.assert_allclose(a, e, rtol=rtol, atol=atol, err_msg=f"{label}step {t + 1}")


def _compare_with_reference(case, steps, make_kwargs=None, semantics_kwargs=None, label=""):
    """`steps` eager `apply` steps on every shape against the paper's reference
    under Keras's semantics (and, with `use_ema`, the averages `finalize`
    puts into the variables)."""
    from keras import ops

    from tests.harness import KerasSemantics, SHAPES, gradient_stream, initial_params

    shapes = list(SHAPES.values())
    # The optimizer sees values rounded to its dtype; so does the reference.
    def rounded(arrays):
        return [np.asarray(a, DTYPE).astype(np.float64) for a in arrays]

    params = rounded(initial_params(shapes))
    stream = [rounded(grads) for grads in gradient_stream(shapes, steps)]
    statistics = None
    if case.statistics:
        statistics = [(rounded(sums), size) for sums, size in case.statistics(stream)]
    optimizer = case.make(**(make_kwargs or {}))
    actual, variables = _trajectory(optimizer, params, stream, statistics)
    semantics = KerasSemantics(case.make_reference(), case.learning_rate, **(semantics_kwargs or {}))
    expected, current = [], params
    for t, grads in enumerate(stream):
        current = semantics.step(current, grads, statistics and statistics[t])
        expected.append(current)
    scale = max(float(np.max(np.abs(e))) for step in expected for e in step)
    _assert_close(actual, expected, scale, label)
    if semantics.ema is not None:
        optimizer.finalize_variable_values(variables)
        averages = [[np.asarray(ops.convert_to_numpy(v), np.float64) for v in variables]]
        _assert_close(averages, [semantics.ema], scale, f"{label}EMA after finalize, ")


def check_reference(case):
    _compare_with_reference(case, 40)


def check_shared_arguments(case):
    """Clipping, loss scaling, gradient accumulation and EMA, against a NumPy
    model of Keras's semantics (each backend runs them through its own code)."""
    from tests.harness import SHARED_ARGUMENTS

    for argument, (make_kwargs, semantics_kwargs) in SHARED_ARGUMENTS.items():
        if argument in case.unsupported:
            try:
                case.make(**make_kwargs)
            except ValueError:
                continue
            raise AssertionError(f"{argument}: accepted, but the case says it is refused")
        _compare_with_reference(case, 21, make_kwargs, semantics_kwargs, label=f"{argument}: ")


def check_no_gradient(case):
    """A trainable weight that gets no gradient keeps its value through `fit`
    and is its own answer, also in a second `fit`."""
    import keras
    from keras import ops

    from tests.harness import least_squares_data

    class UnusedWeight(keras.layers.Layer):
        def build(self, input_shape):
            self.unused = self.add_weight(shape=(2,), initializer="ones", name="unused")

        def call(self, inputs):
            return inputs

    keras.config.set_floatx(DTYPE)
    x, y = least_squares_data()
    model = keras.Sequential([keras.Input((3,)), UnusedWeight(), keras.layers.Dense(1)])
    if case.wrap_model:
        model = case.wrap_model(model)
    model.compile(optimizer=case.make(), loss="mse")
    for _ in range(2):
        model.fit(x, y, batch_size=16, epochs=2, shuffle=False, verbose=0)
        unused = next(w for w in model.trainable_variables if "unused" in w.path)
        answer = model.optimizer.evaluation_weights([unused])[0]
        np.testing.assert_array_equal(ops.convert_to_numpy(unused), [1.0, 1.0])
        np.testing.assert_array_equal(ops.convert_to_numpy(answer), [1.0, 1.0])


def check_fit(case):
    import keras

    from tests.harness import case_model, least_squares_data, least_squares_reference

    keras.config.set_floatx(DTYPE)
    x, y = (a.astype(DTYPE).astype(np.float64) for a in least_squares_data())
    model = case_model(case)
    initial = model.get_weights()
    model.compile(optimizer=case.make(), loss="mse")
    model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
    expected = least_squares_reference(case, initial, x, y, 16, 3)
    for actual, wanted in zip(model.get_weights(), expected):
        np.testing.assert_allclose(actual, wanted, rtol=RTOL[DTYPE], atol=RTOL[DTYPE])


def check_resume(case):
    import keras

    import keras_momenta as km
    from tests.harness import case_model, least_squares_data

    keras.config.set_floatx(DTYPE)
    x, y = least_squares_data()
    path = os.path.join(tempfile.mkdtemp(), "mid_run.keras")

    class SaveAfterSecondEpoch(keras.callbacks.Callback):
        def on_epoch_end(self, epoch, logs=None):
            if epoch == 1:
                self.model.save(path)

    def fit(model, epochs, *extra):
        callbacks = [km.callbacks.SwapEvaluationWeights(), *extra]
        model.fit(x, y, batch_size=16, epochs=epochs, shuffle=False, verbose=0, callbacks=callbacks)

    model = case_model(case)
    model.compile(optimizer=case.make(), loss="mse")
    fit(model, 4, SaveAfterSecondEpoch())
    restored = keras.models.load_model(path)
    fit(restored, 2)
    for actual, wanted in zip(restored.get_weights(), model.get_weights()):
        np.testing.assert_array_equal(actual, wanted)


def check_data_parallel(case):
    import jax
    import keras

    from tests.harness import case_model, least_squares_data

    devices = jax.devices("cpu")
    if len(devices) < 2:
        raise AssertionError(
            "two host devices needed: set XLA_FLAGS=--xla_force_host_platform_device_count=2"
        )
    keras.config.set_floatx(DTYPE)
    x, y = least_squares_data()

    def train(distribution):
        if distribution is not None:
            keras.distribution.set_distribution(distribution)
        try:
            model = case_model(case)
            model.compile(optimizer=case.make(), loss="mse")
            model.fit(x, y, batch_size=16, epochs=3, shuffle=False, verbose=0)
            return model.get_weights()
        finally:
            keras.distribution.set_distribution(None)

    single = train(None)
    parallel = train(keras.distribution.DataParallel(devices=devices[:2]))
    for actual, wanted in zip(parallel, single):
        # The two halves of a batch are summed in another order.
        tolerance = 1e-12 if DTYPE == "float64" else 1e-5
        np.testing.assert_allclose(actual, wanted, rtol=tolerance, atol=tolerance)


def check_in_place(case):
    import jax
    import keras
    from keras import ops

    from tests.harness import IN_PLACE_SHAPE, gradient_stream, initial_params, large_copies

    shapes = [IN_PLACE_SHAPE, (3,)]
    variables = [keras.Variable(p, dtype=DTYPE) for p in initial_params(shapes)]
    optimizer = case.make()
    optimizer.build(variables)
    stream = gradient_stream(shapes, 1)
    if case.statistics:
        square_sums, batch_size = case.statistics(stream)[0]
        optimizer.add_minibatch_statistics(
            [ops.convert_to_tensor(s, DTYPE) for s in square_sums], batch_size, variables
        )
    grads = [ops.convert_to_tensor(g, DTYPE) for g in stream[0]]
    step = jax.jit(
        lambda values, state, grads: optimizer.stateless_apply(state, grads, values),
        donate_argnums=(0, 1),
    )
    compiled = step.lower(
        [v.value for v in variables], [v.value for v in optimizer.variables], grads
    ).compile()
    copies = large_copies(compiled.as_text())
    assert copies == [], f"copies of shapes {copies} in the compiled update"


CHECKS = {
    "reference": check_reference,
    "shared_arguments": check_shared_arguments,
    "no_gradient": check_no_gradient,
    "fit": check_fit,
    "resume": check_resume,
    "data_parallel": check_data_parallel,
    "in_place": check_in_place,
}


def run(case_ids, checks):
    import keras

    from tests.registry import CASES

    backend = keras.backend.backend()
    records = []
    for case in CASES:
        if case_ids != ["all"] and case.id not in case_ids:
            continue
        for check in checks:
            try:
                CHECKS[check](case)
                records.append(_record(case, check, "passed"))
            except ValueError as error:
                # A refusal is acceptable only when it says which backend to use.
                message = str(error)
                status = "refused" if "backend" in message.lower() else "failed"
                records.append(_record(case, check, status, message))
            except Exception:  # reported, with its traceback, by the pytest side
                records.append(_record(case, check, "failed", traceback.format_exc(limit=-6)))
            finally:
                keras.config.set_floatx("float32")
                keras.backend.clear_session(free_memory=False)
    return {"backend": backend, "records": records}


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--cases", nargs="+", default=["all"], help="registry case ids, or all")
    parser.add_argument("--checks", nargs="+", default=["reference", "fit", "resume"], choices=sorted(CHECKS))
    parser.add_argument("--dtype", default="float64", choices=sorted(RTOL))
    args = parser.parse_args(argv)
    global DTYPE
    DTYPE = args.dtype
    result = run(args.cases, args.checks)
    sys.stdout.write("\n" + json.dumps(result) + "\n")


if __name__ == "__main__":
    main()
