"""The AM-SGD paper's runner tasks (Zhou et al. 2020, §6.1): the CIFAR-10
ResNet-34 task, its reduced stand-in, and fixed starting weights across seeds."""

import io
import json

import keras
import numpy as np
import pytest

import keras_momenta as km
from keras_momenta.compare import TASKS, run_comparison
from keras_momenta.compare.optimizers import make_optimizer
from keras_momenta.compare.runner import training_batches
from keras_momenta.compare.tasks import amortized_nesterov
from keras_momenta.compare.experiments import EXPERIMENTS
from keras_momenta.compare.tasks.amortized_nesterov import AMORTIZED_OPTIMIZERS, M_SWEEP_OPTIMIZERS

EXPECTED = {
    "om_sgd": (km.AM1SGD, 1, "II"),
    "am1_sgd_i": (km.AM1SGD, 5, "I"),
    "am1_sgd_ii": (km.AM1SGD, 5, "II"),
    "am2_sgd": (km.AM2SGD, 5, "II"),
}
STEPS = 352  # ceil(45,000 / 128)


def test_cifar_task_follows_section_6_1():
    task = TASKS["cifar10_resnet34"]
    assert task.optimizers == AMORTIZED_OPTIMIZERS
    assert (task.epochs, task.batch_size, task.schedule) == (90, 128, "step")
    for name in AMORTIZED_OPTIMIZERS:
        optimizer = make_optimizer(name, task, 0.1, STEPS, task.epochs)
        schedule = optimizer._learning_rate
        rates = [float(schedule(step)) for step in (0, 30 * STEPS - 1, 30 * STEPS + 1, 60 * STEPS + 1)]
        np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.001], rtol=1e-6)
        if name in EXPECTED:
            cls, m, option = EXPECTED[name]
            assert type(optimizer) is cls
            assert (optimizer.momentum, optimizer.amortization, optimizer.option) == (0.9, m, option)
    nesterov = make_optimizer("nesterov_sgd", task, 0.1, STEPS, 90)
    assert nesterov.nesterov and nesterov.momentum == 0.9


def test_m_sweep_is_am1_sgd_over_m_with_each_option():
    """Fig. 3a: m = 1, 2, 5, 10, 20 for option I (m = 1: M-SGD, Nesterov) and
    option II (m = 1: OM-SGD), β = 0.9, η = 0.1, all on the task's schedule."""
    task = TASKS["digits_resnet8_am"]
    swept = {}
    for name in M_SWEEP_OPTIMIZERS:
        optimizer = make_optimizer(name, task, 0.1, 12, task.epochs)
        assert float(optimizer._learning_rate(0)) == pytest.approx(0.1)
        if isinstance(optimizer, km.AM1SGD):
            assert optimizer.momentum == 0.9
            swept.setdefault(optimizer.option, []).append(optimizer.amortization)
        else:
            assert optimizer.nesterov and optimizer.momentum == 0.9
            swept.setdefault("I", []).append(1)
    assert swept == {"I": [1, 2, 5, 10, 20], "II": [1, 2, 5, 10, 20]}
    (row,) = [e for e in EXPERIMENTS if "Fig. 3a" in e.experiment]
    for command in (row.full, row.reduced):
        assert command.endswith("--optimizers " + " ".join(M_SWEEP_OPTIMIZERS) + "`")


@pytest.mark.heavy
def test_resnet34_size_and_one_step():
    keras.utils.set_random_seed(0)
    model = TASKS["cifar10_resnet34"].build_model()
    assert model.count_params() == 21_299_146  # CIFAR ResNet-34 (21.3M weights)
    convs = [layer for layer in model.layers if isinstance(layer, keras.layers.Conv2D)]
    assert len([c for c in convs if c.kernel_size == (3, 3)]) == 33  # 1 + 2 × 16 blocks
    model.compile(optimizer=km.AM1SGD(0.1), loss="sparse_categorical_crossentropy", jit_compile=False)
    loss = model.train_on_batch(np.zeros((2, 32, 32, 3), np.float32), np.array([0, 1]))
    assert np.isfinite(loss)


def _weights(model):
    return [np.array(w) for w in model.get_weights()]


@pytest.mark.parametrize("task_name", ["digits_resnet8_am", "cifar10_resnet34"])
def test_seeds_share_starting_weights_but_not_batches(task_name):
    """The runner seeds Keras with the run's seed, then calls `build_model`."""
    task = TASKS[task_name]
    assert task.build_model.fixed_initial_weights
    built, after = [], []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        built.append(_weights(task.build_model()))
        after.append(np.random.randint(2**31 - 1))
    for a, b in zip(*built):
        np.testing.assert_array_equal(a, b)
    assert after[0] != after[1]  # what follows build_model still depends on the seed
    # Without the wrapper the two seeds start apart (the check above can fail).
    raw = []
    for seed in (0, 1):
        keras.utils.set_random_seed(seed)
        raw.append(_weights(amortized_nesterov.small_resnet_digits()))
    assert not all(np.array_equal(a, b) for a, b in zip(*raw))
    if task_name == "digits_resnet8_am":
        splits = task.load(None)
        first = [next(iter(training_batches(task, splits, seed, 0, 32)))[1].numpy() for seed in (0, 0, 1)]
        np.testing.assert_array_equal(first[0], first[1])
        assert not np.array_equal(first[0], first[2])


@pytest.mark.parametrize(
    "names",
    [
        ("am2_sgd",),
        pytest.param(AMORTIZED_OPTIMIZERS, marks=pytest.mark.slow),
    ],
)
def test_reduced_stand_in_runs_the_entries(names, tmp_path):
    """One entry in the default suite (a ResNet per entry is ~20 s of
    tracing on two shared cores); every entry under `slow`."""
    task = TASKS["digits_resnet8_am"]
    assert task.scale == "reduced" and "Table 1" in task.stands_for
    run_comparison(
        task=task.name, optimizers=names, seeds=(0,), epochs=1, batch_size=256, out_dir=tmp_path,
        jit_compile=False, stream=io.StringIO(),
    )
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["run"]["entry"] for r in results["runs"]] == list(names)
    for record in results["runs"]:
        assert 0.0 <= record["history"][0]["test_accuracy"] <= 1.0
    assert "avg. per-epoch std" in (tmp_path / "summary.md").read_text()


def test_cifar_task_reads_tfds_and_augments_from_the_seed():
    import tensorflow_datasets as tfds

    task = TASKS["cifar10_resnet34"]
    with tfds.testing.mock_data(num_examples=64):
        splits = task.load(None)
        first = [next(iter(training_batches(task, splits, seed, 0, 16)))[0].numpy() for seed in (0, 0, 1)]
    assert first[0].shape == (16, 32, 32, 3)
    np.testing.assert_array_equal(first[0], first[1])
    assert not np.array_equal(first[0], first[2])


@pytest.mark.parametrize("model", [
    pytest.param("stand_in", marks=pytest.mark.slow),
    pytest.param("resnet34", marks=pytest.mark.heavy),
])
def test_cifar_task_runs_every_entry(tmp_path, monkeypatch, model):
    import tensorflow_datasets as tfds

    from tests.test_compare_expectigrad_tasks import with_stand_in

    if model == "stand_in":
        with_stand_in(monkeypatch, "cifar10_resnet34", (32, 32, 3), 10)
    with tfds.testing.mock_data(num_examples=20):
        run_comparison(
            task="cifar10_resnet34", seeds=(0,), epochs=1, batch_size=8, out_dir=tmp_path,
            jit_compile=False, stream=io.StringIO(),
        )
    results = json.loads((tmp_path / "results.json").read_text())
    assert [r["run"]["entry"] for r in results["runs"]] == list(AMORTIZED_OPTIMIZERS)
