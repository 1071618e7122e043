"""The runner's Dissecting Adam tasks (Balles & Hennig 2018, §4.1 and Appendix A)."""

import io
import json

import keras
import numpy as np
import pytest

import keras_momenta as km
from keras_momenta.compare import TASKS, run_comparison
from keras_momenta.compare.optimizers import OPTIMIZERS, make_optimizer
from keras_momenta.compare.runner import training_batches
from keras_momenta.compare.tasks.dissecting_adam import DISSECTING_OPTIMIZERS


def kernels_and_biases(model):
    layers = [layer for layer in model.layers if hasattr(layer, "kernel")]
    return layers, [layer.bias_regularizer for layer in layers]


def test_mnist_mlp_follows_appendix_a():
    task = TASKS["mnist_mlp_dissecting"]
    layers, bias_regularizers = kernels_and_biases(task.build_model())
    assert [layer.units for layer in layers] == [1000, 500, 100, 10]
    assert all(layer.kernel_regularizer is not None for layer in layers)
    assert bias_regularizers == [None] * 4  # L2 on the weights, not the biases
    assert layers[-1].activation is keras.activations.softmax
    assert (task.batch_size, task.schedule) == (128, "constant")


def test_cifar_models_follow_appendix_a():
    cnn = TASKS["cifar10_cnn"].build_model()
    convs = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(64, (5, 5)), (96, (3, 3)), (128, (3, 3))]
    pools = [layer for layer in cnn.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((3, 3), (2, 2))] * 3
    assert [layer.units for layer in cnn.layers if isinstance(layer, keras.layers.Dense)] == [512, 256, 10]
    allcnn = TASKS["cifar100_allcnn"].build_model()
    convs = [layer for layer in allcnn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [c.filters for c in convs] == [96, 96, 96, 192, 192, 192, 192, 192, 100]
    assert [c.strides[0] for c in convs] == [1, 1, 2, 1, 1, 2, 1, 1, 1]
    assert [c.kernel_size[0] for c in convs][-2:] == [1, 1]
    assert not any(isinstance(layer, keras.layers.Dense) for layer in allcnn.layers)
    assert allcnn.output_shape == (None, 100)
    for model in (cnn, allcnn):
        layers, bias_regularizers = kernels_and_biases(model)
        assert all(layer.kernel_regularizer is not None for layer in layers)
        assert bias_regularizers == [None] * len(layers)
    assert TASKS["cifar10_cnn"].batch_size == TASKS["cifar100_allcnn"].batch_size == 256
    assert TASKS["cifar10_cnn"].schedule == "constant"


def test_entries_are_the_papers_methods_with_momentum_0_9():
    task = TASKS["mnist_mlp_dissecting"]
    assert set(DISSECTING_OPTIMIZERS) <= set(OPTIMIZERS)
    built = {name: make_optimizer(name, task, 1e-3, 10, 1) for name in DISSECTING_OPTIMIZERS}
    assert type(built["sgd_momentum"]) is keras.optimizers.SGD and built["sgd_momentum"].momentum == 0.9
    assert type(built["m_ssd"]) is km.MSSD and built["m_ssd"].momentum == 0.9
    assert type(built["m_svag"]) is km.MSVAG and built["m_svag"].variance == "moving_average"
    assert built["m_svag_mb"].variance == "minibatch" and OPTIMIZERS["m_svag_mb"].wrap_model
    assert type(built["adam_star"]) is km.AdamStar
    assert (built["adam"].beta_1, built["adam"].beta_2) == (0.9, 0.999)


def test_cifar100_step_sizes_drop_tenfold_after_40k_and_50k_steps():
    task = TASKS["cifar100_allcnn"]
    steps_per_epoch = 176  # ceil(45,000 / 256)
    assert "m_svag_mb" not in task.optimizers  # dropout: no per-example gradients
    for name in task.optimizers:
        schedule = make_optimizer(name, task, 1.0, steps_per_epoch, task.epochs)._learning_rate
        for step, factor in ((39_999, 1), (40_000, 1), (40_001, 0.1), (50_001, 0.01), (60_000, 0.01)):
            assert float(schedule(step)) == pytest.approx(factor, rel=1e-6), (name, step)


TFDS_TASKS = [("mnist_mlp_dissecting", (784,)), ("cifar10_cnn", (32, 32, 3)), ("cifar100_allcnn", (32, 32, 3))]


@pytest.mark.parametrize("task_name, shape", TFDS_TASKS)
def test_tasks_read_tfds_and_batches_follow_the_seed(task_name, shape):
    """Same seed, same first batch (augmentation included); another seed, another."""
    import tensorflow_datasets as tfds

    task = TASKS[task_name]
    with tfds.testing.mock_data(num_examples=40):
        splits = task.load(None)
        first = [next(iter(training_batches(task, splits, seed, 0, 8)))[0].numpy() for seed in (0, 0, 1)]
        test_features, _ = next(iter(splits.test.batch(8)))
    assert first[0].shape == (8, *shape) and test_features.shape[1:] == shape
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])
    if task.augment is not None:  # standardised per image, after augmentation
        np.testing.assert_allclose(first[0].mean(axis=(1, 2, 3)), 0.0, atol=1e-4)
        # Only the augmentation differs: same order (no shuffle) and seeds 0, 1.
        unshuffled = task.__class__(**{**task.__dict__, "shuffle": False})
        a, b = (next(iter(training_batches(unshuffled, splits, s, 0, 8)))[0].numpy() for s in (0, 1))
        assert not np.array_equal(a, b)


def _run_every_entry(task_name, tmp_path, batch_size, names=None):
    task = TASKS[task_name]
    run_comparison(
        task=task_name, optimizers=names, seeds=(0,), epochs=1, batch_size=batch_size,
        out_dir=tmp_path, jit_compile=False, stream=io.StringIO(),
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["run"]["entry"] for r in results["runs"]] == list(names or task.optimizers)
    for record in results["runs"]:
        assert np.isfinite(record["history"][0]["loss"])


# One entry in the default suite (the mini-batch variance one, which needs
# `km.MinibatchVarianceModel`), every entry under `slow`.
ENTRY_SETS = [
    pytest.param(("m_svag_mb",), id="m_svag_mb"),
    pytest.param(None, id="every_entry", marks=pytest.mark.slow),
]


@pytest.mark.parametrize("names", ENTRY_SETS)
@pytest.mark.parametrize("task_name", ["mnist_mlp_dissecting", "cifar10_cnn"])
def test_full_tasks_run_on_mock_data(task_name, names, tmp_path):
    """m_svag_mb goes through `km.MinibatchVarianceModel` with each task it is listed for."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        _run_every_entry(task_name, tmp_path, batch_size=8, names=names)


@pytest.mark.slow
def test_allcnn_runs_every_entry(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=20):
        _run_every_entry("cifar100_allcnn", tmp_path, batch_size=8)


@pytest.mark.parametrize(
    "names", [pytest.param(("m_ssd",), id="m_ssd"), pytest.param(None, id="every_entry", marks=pytest.mark.slow)]
)
@pytest.mark.parametrize("task_name", ["mnist1d_mlp_dissecting", "digits_cnn_dissecting", "digits_allcnn_dissecting"])
def test_reduced_stand_ins_run(task_name, names, tmp_path):
    task = TASKS[task_name]
    assert task.scale == "reduced" and "Fig. 3" in task.stands_for
    _run_every_entry(task_name, tmp_path, batch_size=512, names=names)
