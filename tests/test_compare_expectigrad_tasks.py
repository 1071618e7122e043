"""Expectigrad's image tasks (Daley & Amato 2020, §4.2 and §6): the models
against the paper's sizes, the tasks' settings, and one short epoch of every
optimizer entry of each task in the runner, on generated data.

The CIFAR-10 models are costly on a CPU: the default suite builds each and
takes one step, and runs the tasks' data, schedule and every entry with a
one-layer stand-in model; the real models run every entry under `heavy`
(not in CI).
"""

import dataclasses
import io
import json

import keras
import numpy as np
import pytest

from keras_momenta.compare import TASKS, resnet, run_comparison, vision
from keras_momenta.compare.optimizers import OPTIMIZERS, entry
from keras_momenta.compare.tasks import expectigrad


def run_task(name, tmp_path, batch_size, mock_examples=4, optimizers=None):
    """One epoch of every entry of task `name` (or of `optimizers`), seed 0;
    TFDS reads mock data."""
    import tensorflow_datasets as tfds

    out = tmp_path / "out"
    with tfds.testing.mock_data(num_examples=mock_examples):
        run_comparison(
            task=name, optimizers=optimizers, seeds=(0,), epochs=1, batch_size=batch_size, out_dir=out,
            jit_compile=False, stream=io.StringIO(), data_dir=str(tmp_path / "data"),
        )
    results = json.loads((out / "results.json").read_text())
    runs = results["runs"]
    assert [run["run"]["entry"] for run in runs] == list(optimizers or TASKS[name].optimizers)
    for run in runs:
        (row,) = run["history"]
        for key in ("loss", "val_loss", "test_loss", "test_accuracy"):
            assert np.isfinite(row[key]), (run["run"]["entry"], key, row)
    assert (out / "summary.md").exists()
    return results


def stand_in(shape, classes):
    """A one-layer model for the task's inputs: checks data and entries, cheaply."""
    def build():
        return keras.Sequential([
            keras.Input(shape),
            keras.layers.GlobalAveragePooling2D() if len(shape) == 3 else keras.layers.Identity(),
            keras.layers.Dense(classes, activation="softmax"),
        ])
    return build


def with_stand_in(monkeypatch, name, shape, classes):
    monkeypatch.setitem(
        TASKS, name, dataclasses.replace(TASKS[name], build_model=stand_in(shape, classes))
    )


def one_step(model, entry_name, shape, classes, batch=2):
    """One eager training step (no graph tracing) with an entry's optimizer:
    every trainable variable must move and stay finite."""
    model.compile(optimizer=entry(entry_name).build(entry(entry_name).learning_rate),
                  loss="sparse_categorical_crossentropy", run_eagerly=True)
    before = [v.numpy().copy() for v in model.trainable_variables]
    x = np.random.default_rng(0).random((batch, *shape), dtype=np.float32)
    loss = model.train_on_batch(x, np.arange(batch) % classes)
    assert np.isfinite(loss)
    after = [v.numpy() for v in model.trainable_variables]
    assert all(np.isfinite(a).all() for a in after)
    moved = sum(not np.array_equal(a, b) for a, b in zip(before, after))
    assert moved == len(after), f"{len(after) - moved} variables did not move"


def layers_of(model, *types):
    return [layer for layer in model._flatten_layers(include_self=False) if type(layer) in types]


def trainable_count(model):
    return sum(int(np.prod(v.shape)) for v in model.trainable_variables)


def test_vgg16_has_the_papers_33_6m_parameters_and_trains():
    model = vision.vgg16_cifar()
    assert round(trainable_count(model) / 1e5) == 336  # §6: "33.6 million parameters"
    convolutions = layers_of(model, keras.layers.Conv2D)
    assert [c.filters for c in convolutions] == [64] * 2 + [128] * 2 + [256] * 3 + [512] * 6
    assert [d.units for d in layers_of(model, keras.layers.Dense)] == [4096, 4096, 10]
    one_step(model, "expectigrad", (32, 32, 3), 10)


def test_cifar_resnet50_has_the_papers_23_5m_parameters_and_trains():
    model = vision.resnet50_cifar()
    assert trainable_count(model) == 23_520_842  # §6: "23.5 million parameters"
    convolutions = layers_of(model, keras.layers.Conv2D)
    blocks = layers_of(model, keras.layers.Add)
    # The stem, 16 bottleneck blocks of 3 and the classifier are the "50
    # layers"; the first block of each stage has a projection shortcut.
    assert len(blocks) == 16 and len(convolutions) == 1 + 3 * 16 + 4
    assert convolutions[0].kernel_size == (3, 3) and not layers_of(model, keras.layers.MaxPooling2D)
    assert len(layers_of(model, keras.layers.Dense)) == 1
    one_step(model, "adam", (32, 32, 3), 10)


def test_mnist_mlp_has_section_4_2s_settings():
    task = TASKS["mnist_mlp"]
    assert (task.epochs, task.batch_size, task.schedule) == (150, 128, "constant")
    assert task.optimizers == ("expectigrad", "adam", "rmsprop", "adadelta")
    model = task.build_model()
    assert [d.units for d in layers_of(model, keras.layers.Dense)] == [1000, 1000, 10]
    assert model.count_params() == 785_000 + 1_001_000 + 10_010 and not model.losses
    reduced = TASKS["mnist1d_mlp_2x1000"]
    assert (reduced.epochs, reduced.batch_size, reduced.optimizers) == (150, 128, task.optimizers)
    assert [d.units for d in layers_of(reduced.build_model(), keras.layers.Dense)] == [1000, 1000, 10]
    assert reduced.scale == "reduced" and "Fig. 2" in reduced.stands_for


def test_cifar_tasks_have_section_6s_settings():
    wanted = {"expectigrad", "adagrad", "adam", "amsgrad"} | ({"yogi"} & set(OPTIMIZERS))
    for name in ("cifar10_vgg16", "cifar10_resnet50", "digits_vgg"):
        task = TASKS[name]
        assert set(task.optimizers) == wanted and task.paper == "expectigrad"
    for name in ("cifar10_vgg16", "cifar10_resnet50"):
        task = TASKS[name]
        assert (task.epochs, task.scale, task.augment) == (250, "full", resnet.crop_and_flip)
        assert task.load is resnet.cifar10 and "Fig. 3" in task.stands_for
    assert TASKS["digits_vgg"].scale == "reduced"
    # The optimizer tuples are what the module says, for tasks/imagenet.py's sake too.
    assert expectigrad.CIFAR_OPTIMIZERS == TASKS["cifar10_vgg16"].optimizers


@pytest.mark.parametrize("name, batch_size", [
    ("mnist_mlp", 2),             # TFDS mnist mock, the paper's MLP
    ("mnist1d_mlp_2x1000", 1024),  # 4 steps of the real task
    ("digits_vgg", 512),          # 3 steps of the real task
])
@pytest.mark.parametrize("names", [
    pytest.param(("expectigrad",), id="expectigrad"),
    pytest.param(None, id="every_entry", marks=pytest.mark.slow),
])
def test_small_tasks_run(tmp_path, name, batch_size, names):
    run_task(name, tmp_path, batch_size, optimizers=names)


@pytest.mark.parametrize("name", ["cifar10_vgg16", "cifar10_resnet50"])
def test_cifar_tasks_run_every_entry_on_a_stand_in_model(tmp_path, monkeypatch, name):
    with_stand_in(monkeypatch, name, (32, 32, 3), 10)
    run_task(name, tmp_path, batch_size=2)


@pytest.mark.heavy
@pytest.mark.parametrize("name", ["cifar10_vgg16", "cifar10_resnet50"])
def test_cifar_tasks_run_every_entry_with_the_real_model(tmp_path, name):
    run_task(name, tmp_path, batch_size=2)
