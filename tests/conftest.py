import os

os.environ.setdefault("KERAS_BACKEND", "tensorflow")
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")

import keras  # noqa: E402
import pytest  # noqa: E402
import tensorflow as tf  # noqa: E402

# Two logical CPUs, so MirroredStrategy can be tested without accelerators.
# This must happen before TensorFlow initialises its devices.
_cpus = tf.config.list_physical_devices("CPU")
tf.config.set_logical_device_configuration(
    _cpus[0], [tf.config.LogicalDeviceConfiguration()] * 2
)


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
    config.addinivalue_line("markers", "slow: long-running; deselect with -m 'not slow'")


@pytest.fixture(autouse=True)
def _clean_keras_state():
    """Each test starts with float32, no mixed precision and a fresh graph."""
    yield
    keras.config.set_floatx("float32")
    keras.mixed_precision.set_global_policy("float32")
    # Without a full garbage collection, which took 0.7 s after every test
    # (half of the suite's time); Python's own collector frees the rest.
    keras.backend.clear_session(free_memory=False)


def pytest_collection_modifyitems(config, items):
    """`slow` tests run with KM_RUN_SLOW=1 or when selected with `-m slow`."""
    if os.environ.get("KM_RUN_SLOW") == "1" or config.option.markexpr:
        return
    kept = [item for item in items if "slow" not in item.keywords]
    deselected = [item for item in items if "slow" in item.keywords]
    if deselected:
        config.hook.pytest_deselected(items=deselected)
        items[:] = kept
