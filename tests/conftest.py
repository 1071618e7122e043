import gc
import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

from tests import worker_memory  # noqa: E402

# Two logical CPUs, so MirroredStrategy can be tested without accelerators.
# This must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


# The longest strategy test (two worker processes, every registry case) takes
# about 130 s in a loaded CI worker.
STRATEGY_TEST_TIMEOUT = 600


@pytest.fixture(scope="session")
def mirrored_strategy():
    """One two-replica MirroredStrategy for the whole session.

    TensorFlow remembers the shapes of each collective instance key for the
    whole process, and every new strategy numbers its all-reduces from the
    same key again: a second strategy whose first all-reduce has other shapes
    (another model, or a train step with one more all-reduce) fails with
    "Shape mismatch in the collective instance". Sharing one strategy keeps
    the keys unique.
    """
    return tf.distribute.MirroredStrategy(["/cpu:0", "/cpu:1"])


def pytest_configure(config):
    config.pluginmanager.register(worker_memory, "worker_memory")
    config.addinivalue_line("markers", "slow: long-running; deselect with -m 'not slow'")
    config.addinivalue_line(
        "markers",
        "strategy_without_fit: takes a strategy but trains no Keras model under it, so it "
        "skips the collections around strategy tests (about 40 s a test late in a CI worker)",
    )
    config.addinivalue_line(
        "markers",
        "heavy: not in CI (-m heavy): every comparison task with every optimizer entry, "
        "on stand-in and on full-size models; JAX float64 on the non-default registry cases",
    )


def _trains_under_a_strategy(item):
    if item.get_closest_marker("strategy_without_fit"):
        return False
    names = item.function.__code__.co_names if hasattr(item, "function") else ()
    return "mirrored_strategy" in item.fixturenames or any("Strategy" in n for n in names)


@pytest.fixture(autouse=True)
def _clean_keras_state(request):
    """Each test starts with float32, no mixed precision and a fresh graph.

    A full garbage collection takes 0.7 s (half of the suite's time after
    every test), so it runs only around tests that train under a
    `tf.distribute` strategy: the distributed iterators and functions of
    earlier tests must be finalised before such a test, not by Python's own
    collector while it runs (that crashed a worker, and once gave wrong
    weights, in `test_mirrored_strategy_matches_single_device`). The
    collector is also off while such a test runs: a worker still crashed
    once in `Model.fit` there (a segmentation fault in TensorFlow, once in a
    CI run), and a collection finalising an iterator mid-test is our reading
    of it, not a proven cause; those tests are also rerun once after a crash
    (see below).
    """
    strategy_test = _trains_under_a_strategy(request.node)
    if strategy_test:
        gc.collect()
        gc.disable()
    try:
        yield
    finally:
        if strategy_test:
            gc.enable()
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy("float32")
    keras.backend.clear_session(free_memory=strategy_test)


def pytest_collection_modifyitems(config, items):
    """`slow` tests run with KM_RUN_SLOW=1 (as in CI) or when selected with
    `-m slow`; `heavy` ones with KM_RUN_HEAVY=1 or `-m heavy` only.

    A test that trains under a strategy in the test process is rerun once if
    it fails or crashes its worker (pytest-rerunfailures; the summary counts
    the reruns): TensorFlow's distributed input pipeline rarely segfaults
    under load, and a crash must not fail CI for code that is right. A test
    that fails twice fails. Such a test that hangs is ended after
    `STRATEGY_TEST_TIMEOUT` seconds by killing its worker (a deadlock inside
    TensorFlow never returns to Python, where the default timeout's signal
    would be handled), and is then rerun like a crash.

    Tests that train under a strategy run first: the full collections
    around them (see `_clean_keras_state`) take under a second in a young
    worker but about 20 s late in a CI worker, whose heap holds every
    earlier test's graphs (2000 s of a 4300 s CI run went to them).
    """
    strategy_tests = {item for item in items if _trains_under_a_strategy(item)}
    for item in strategy_tests:
        item.add_marker(pytest.mark.flaky(reruns=1))
        item.add_marker(pytest.mark.timeout(STRATEGY_TEST_TIMEOUT, method="thread"))
    items.sort(key=lambda item: item not in strategy_tests)
    if config.option.markexpr:
        return
    skipped = set()
    if os.environ.get("KM_RUN_HEAVY") != "1":
        skipped.add("heavy")
    if os.environ.get("KM_RUN_SLOW") != "1" and os.environ.get("KM_RUN_HEAVY") != "1":
        skipped.add("slow")
    kept = [item for item in items if not skipped & set(item.keywords)]
    deselected = [item for item in items if skipped & set(item.keywords)]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
