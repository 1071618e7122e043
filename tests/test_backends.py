"""The conformance checks on the other Keras backends (JAX, PyTorch), each in a process of its own.

`tests/backend_checks.py` runs the registry cases on one backend and reports
one record per (case, check). Every optimizer must pass, or be refused with
an error that names the backend it needs: only `MinibatchVarianceModel`
(per-example gradients through `tf.vectorized_map`) is, so the mini-batch
variance cases must pass the eager reference check and be refused in `fit`.
"""

import json
import os
import subprocess
import sys

import pytest

from tests.registry import CASES

ROOT = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))

JAX = {"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "0"}
JAX_X64 = {"KERAS_BACKEND": "jax", "JAX_ENABLE_X64": "1"}
TORCH = {"KERAS_BACKEND": "torch"}
MODEL_CHECKS = ("no_gradient", "fit", "resume")

# Name -> (environment, dtype, checks). JAX computes in 32 bits unless 64-bit
# types are switched on; both are what users run. Keras's PyTorch backend
# computes float64 `ops.matmul` in float32 and rounds the Python floats of its
# clipping and EMA code to float32 (Keras's own SGD misses a float64
# least-squares reference by 4e-8 there), so its float64 configuration checks
# the optimizers' own arithmetic (eager steps, exact resumption) and the rest
# runs in float32.
CONFIGURATIONS = {
    "jax-float64": (JAX_X64, "float64", ("reference", *MODEL_CHECKS, "data_parallel")),
    "jax-float32": (JAX, "float32", ("reference", *MODEL_CHECKS, "data_parallel", "in_place")),
    # Keras's clipping, loss scaling, accumulation and EMA run op by op in
    # JAX's eager mode, about 40 s a case: one case of each family, in CI.
    "jax-float64-shared_arguments": (JAX_X64, "float64", ("shared_arguments",)),
    "torch-float64": (TORCH, "float64", ("reference", "resume")),
    "torch-float32": (TORCH, "float32", ("reference", "shared_arguments", *MODEL_CHECKS)),
}
ONE_CASE_PER_FAMILY = ("jax-float64-shared_arguments",)
FAMILIES = sorted({case.id.split("-")[0] for case in CASES})


def _cases(family, slow):
    return [c for c in CASES if c.id.split("-")[0] == family and c.slow == slow]


def _run_checks(configuration, cases):
    environment, dtype, checks = CONFIGURATIONS[configuration]
    env = {
        **os.environ,
        **environment,
        # Two host devices for `keras.distribution.DataParallel`.
        "XLA_FLAGS": "--xla_force_host_platform_device_count=2",
        "TF_CPP_MIN_LOG_LEVEL": "2",
    }
    command = [
        sys.executable, "-m", "tests.backend_checks",
        "--dtype", dtype, "--checks", *checks, "--cases", *[c.id for c in cases],
    ]
    completed = subprocess.run(
        command, cwd=ROOT, env=env, capture_output=True, text=True, timeout=900
    )
    assert completed.returncode == 0, completed.stderr[-4000:]
    return json.loads(completed.stdout.strip().splitlines()[-1])


def _expected_status(case, check, backend):
    model_check = check in MODEL_CHECKS or check == "data_parallel"
    if case.wrap_model is not None and model_check and backend != "tensorflow":
        return "refused"
    return "passed"


# The default run checks each backend's default (32-bit) mode on the default
# cases; CI also runs the rest of the cases and the float64 modes, except
# JAX's float64 mode on the rest of the cases (its default cases hold every
# family; the rest take JAX about 5 minutes to compile): those are `heavy`.
DEFAULT_CONFIGURATIONS = ("jax-float32", "torch-float32")
HEAVY_REST = ("jax-float64",)
# JAX takes 40-90 s to compile each of these families' default cases: the
# default run checks them on PyTorch only, CI on both.
SLOW_ON_JAX = ("igt", "am1sgd", "am2sgd")


def _params():
    for configuration in sorted(CONFIGURATIONS):
        for family in FAMILIES:
            if configuration in ONE_CASE_PER_FAMILY:
                case = next(c for c in CASES if c.id.split("-")[0] == family)
                yield pytest.param(
                    configuration, [case], id=f"{configuration}-{family}-one", marks=pytest.mark.slow
                )
                continue
            for slow in (False, True):
                cases = _cases(family, slow)
                if cases:
                    yield pytest.param(
                        configuration, cases,
                        id=f"{configuration}-{family}-{'rest' if slow else 'default'}",
                        marks=_marks(configuration, slow, family),
                    )


def _marks(configuration, slow, family):
    if slow and configuration in HEAVY_REST:
        return [pytest.mark.heavy]
    if slow or configuration not in DEFAULT_CONFIGURATIONS:
        return [pytest.mark.slow]
    if configuration.startswith("jax") and family in SLOW_ON_JAX:
        return [pytest.mark.slow]
    return []


@pytest.mark.parametrize("configuration, cases", list(_params()))
def test_registry_cases_on_backend(configuration, cases):
    result = _run_checks(configuration, cases)
    records = {(r["case"], r["check"]): r for r in result["records"]}
    problems = []
    for case in cases:
        for check in CONFIGURATIONS[configuration][2]:
            record = records.get((case.id, check))
            expected = _expected_status(case, check, result["backend"])
            if record is None:
                problems.append(f"{case.id} {check}: not run")
            elif record["status"] != expected:
                problems.append(
                    f"{case.id} {check}: {record['status']} (expected {expected})\n{record['detail']}"
                )
    assert result["backend"] == CONFIGURATIONS[configuration][0]["KERAS_BACKEND"]
    assert not problems, "\n\n".join(problems)
