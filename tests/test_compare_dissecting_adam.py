"""The runner's Dissecting Adam tasks and entries (Appendix A of the paper)."""

import io

import keras
import numpy as np
import pytest

import keras_momenta as km
from keras_momenta.compare import OPTIMIZERS, TASKS, run_comparison
from keras_momenta.compare.optimizers import make_optimizer
from keras_momenta.compare.tasks import DISSECTING_OPTIMIZERS
from tests.test_compare import check_outputs


def kernels_and_biases(model):
    layers = [layer for layer in model.layers if hasattr(layer, "kernel")]
    return layers, [layer.bias_regularizer for layer in layers]


def test_mnist_mlp_follows_appendix_a():
    task = TASKS["mnist_mlp_dissecting"]
    model = task.build_model()
    layers, bias_regularizers = kernels_and_biases(model)
    assert [layer.units for layer in layers] == [1000, 500, 100, 10]
    assert all(layer.kernel_regularizer is not None for layer in layers)
    assert bias_regularizers == [None] * 4  # L2 on the weights, not the biases
    assert layers[-1].activation is keras.activations.softmax
    assert task.batch_size == 128 and task.step_decay == ()


def test_cifar_models_follow_appendix_a():
    cnn = TASKS["cifar10_cnn"].build_model()
    convs = [layer for layer in cnn.layers if isinstance(layer, keras.layers.Conv2D)]
    assert [(c.filters, c.kernel_size) for c in convs] == [(64, (5, 5)), (96, (3, 3)), (128, (3, 3))]
    pools = [layer for layer in cnn.layers if isinstance(layer, keras.layers.MaxPooling2D)]
    assert [(p.pool_size, p.strides) for p in pools] == [((3, 3), (2, 2))] * 3
    dense = [layer.units for layer in cnn.layers if isinstance(layer, keras.layers.Dense)]
    assert dense == [512, 256, 10]

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


def test_entries_are_the_four_methods_with_momentum_0_9():
    task = TASKS["mnist_mlp_dissecting"]
    assert set(DISSECTING_OPTIMIZERS) <= set(OPTIMIZERS)
    m_sgd, m_ssd, m_svag, adam = (make_optimizer(name, task) for name in DISSECTING_OPTIMIZERS)
    assert type(m_sgd) is keras.optimizers.SGD and m_sgd.momentum == 0.9
    assert type(m_ssd) is km.MSSD and m_ssd.momentum == 0.9
    assert type(m_svag) is km.MSVAG and m_svag.momentum == 0.9 and m_svag.variance == "moving_average"
    assert type(adam) is keras.optimizers.Adam
    assert (adam.beta_1, adam.beta_2, adam.epsilon) == (0.9, 0.999, 1e-7)


def test_cifar100_step_sizes_drop_tenfold_after_40k_and_50k_steps():
    task = TASKS["cifar100_allcnn"]
    assert task.step_decay == (40_000, 50_000) and task.total_steps > 50_000
    for name in DISSECTING_OPTIMIZERS:
        schedule = make_optimizer(name, task)._learning_rate
        initial = float(schedule(0))
        for step, factor in ((39_999, 1), (40_000, 1), (40_001, 0.1), (50_001, 0.01), (60_000, 0.01)):
            assert float(schedule(step)) == pytest.approx(initial * factor, rel=1e-6), (name, step)
    # Without a decay the entries keep a constant step size.
    assert isinstance(make_optimizer("adam", TASKS["cifar10_cnn"])._learning_rate, keras.Variable)


TFDS_TASKS = [
    ("mnist_mlp_dissecting", 130, (784,)),
    ("cifar10_cnn", 20, (32, 32, 3)),
    ("cifar100_allcnn", 8, (32, 32, 3)),
]


@pytest.mark.parametrize("task_name, examples, shape", TFDS_TASKS)
def test_tasks_read_tfds(task_name, examples, shape):
    """The real `tfds.load` path, fed by TFDS's mock data instead of a download."""
    import tensorflow_datasets as tfds

    task = TASKS[task_name]
    with tfds.testing.mock_data(num_examples=examples):
        train, test = task.datasets(0)
        features, labels = next(iter(train))
        test_features, _ = next(iter(test))
    assert features.shape == (min(examples, task.batch_size), *shape)
    assert labels.shape == features.shape[:1] and test_features.shape[1:] == shape
    assert np.all(np.isfinite(features))
    if task_name != "mnist_mlp_dissecting":  # standardised per image
        np.testing.assert_allclose(np.mean(features, axis=(1, 2, 3)), 0.0, atol=1e-4)
        np.testing.assert_allclose(np.mean(test_features, axis=(1, 2, 3)), 0.0, atol=1e-4)


@pytest.mark.parametrize(
    "task_name, examples",
    [
        pytest.param(name, examples, marks=pytest.mark.slow) for name, examples, _ in TFDS_TASKS
    ],
)
def test_runner_trains_the_task(task_name, examples, tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=examples):
        run_comparison(
            task=task_name, optimizers=["m_svag"], seeds=(0,), epochs=1,
            out_dir=tmp_path, stream=io.StringIO(),
        )
    check_outputs(tmp_path, ["m_svag"], (0,), 1)
