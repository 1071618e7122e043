"""The string forms that name an optimizer (docs/index.md, "Optimizer names")."""

import subprocess
import sys

import keras
import numpy as np
import pytest

import keras_momenta as km

NEEDS_NO_ARGUMENT = sorted(set(km.OPTIMIZERS) - {"igt"})


@pytest.mark.parametrize("key", NEEDS_NO_ARGUMENT)
def test_compile_takes_the_short_name_the_class_name_and_the_registered_name(key):
    cls = km.OPTIMIZERS[key]
    for name in (key, cls.__name__, f"keras_momenta>{cls.__name__}"):
        model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
        model.compile(optimizer=name, loss="mse")
        assert type(model.optimizer) is cls, name
        model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=1, verbose=0)
        assert int(model.optimizer.iterations) == 1


def test_a_config_dict_by_short_name_sets_the_hyperparameters():
    optimizer = keras.optimizers.get({"class_name": "msvag", "config": {"learning_rate": 0.02, "momentum": 0.5}})
    assert isinstance(optimizer, km.MSVAG)
    assert optimizer.get_config()["momentum"] == 0.5
    assert float(optimizer.learning_rate) == pytest.approx(0.02)


def test_igt_by_name_takes_its_inner_optimizer_by_name_or_config():
    by_name = keras.optimizers.get({"class_name": "igt", "config": {"inner_optimizer": "adam", "tail_fraction": 0.1}})
    assert isinstance(by_name, km.IGT) and isinstance(by_name.inner_optimizer, keras.optimizers.Adam)
    assert by_name.get_config()["tail_fraction"] == 0.1
    inner = keras.optimizers.serialize(keras.optimizers.SGD(0.3, momentum=0.9))
    by_config = keras.optimizers.get({"class_name": "IGT", "config": {"inner_optimizer": inner}})
    assert by_config.inner_optimizer.get_config()["momentum"] == 0.9


def test_igt_without_an_inner_optimizer_says_how_to_give_one():
    with pytest.raises(ValueError, match=r"km.IGT\(keras.optimizers.SGD"):
        keras.optimizers.get("igt")


def test_names_someone_else_registered_first_are_left_alone():
    script = (
        "import keras\n"
        "class Mine(keras.optimizers.SGD): pass\n"
        "keras.saving.get_custom_objects()['expectigrad'] = Mine\n"
        "import keras_momenta as km\n"
        "assert keras.optimizers.get('expectigrad').__class__ is Mine\n"
        "assert keras.optimizers.get('Expectigrad').__class__ is km.Expectigrad\n"
        "assert km.get('expectigrad').__class__ is km.Expectigrad\n"
        "print('ok')\n"
    )
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True)
    assert result.returncode == 0, result.stderr[-2000:]
    assert result.stdout.strip().endswith("ok")


def test_a_saved_model_names_the_package_not_the_short_name(tmp_path):
    model = keras.Sequential([keras.Input((3,)), keras.layers.Dense(1)])
    model.compile(optimizer="expectigrad", loss="mse")
    model.fit(np.ones((4, 3)), np.ones((4, 1)), epochs=1, verbose=0)
    assert keras.optimizers.serialize(model.optimizer)["registered_name"] == "keras_momenta>Expectigrad"
    model.save(tmp_path / "m.keras")
    reloaded = keras.models.load_model(tmp_path / "m.keras")
    assert type(reloaded.optimizer) is km.Expectigrad
