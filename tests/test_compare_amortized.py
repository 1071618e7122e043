"""The comparison runner's AM-SGD entries, the CIFAR-10 ResNet-34 task and the
per-epoch std of the summary (Zhou et al. 2020, Section 6 and Table 1)."""

import csv
import io

import numpy as np
import pytest

import keras_momenta as km
from keras_momenta.compare import TASKS, run_comparison
from keras_momenta.compare.optimizers import make_optimizer
from keras_momenta.compare.tasks import AMORTIZED_OPTIMIZERS
from tests.test_compare import check_outputs

EXPECTED = {
    "om_sgd": (km.AM1SGD, 1, "II"),
    "am1_sgd_i": (km.AM1SGD, 5, "I"),
    "am1_sgd_ii": (km.AM1SGD, 5, "II"),
    "am2_sgd": (km.AM2SGD, 5, "II"),
}


def test_entries_have_the_papers_settings_and_follow_the_step_schedule():
    task = TASKS["cifar10_resnet34"]
    assert task.default_optimizers == AMORTIZED_OPTIMIZERS
    assert task.step_decay == (30 * 391, 60 * 391) and task.epochs == 90
    for name in AMORTIZED_OPTIMIZERS:
        optimizer = make_optimizer(name, task)
        schedule = optimizer._learning_rate
        rates = [float(schedule(step)) for step in (0, 30 * 391, 30 * 391 + 1, 60 * 391 + 1)]
        np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.001], rtol=1e-6)
        if name in EXPECTED:
            cls, m, option = EXPECTED[name]
            assert type(optimizer) is cls
            assert (optimizer.momentum, optimizer.amortization, optimizer.option) == (0.9, m, option)
    nesterov = make_optimizer("nesterov_sgd", task)
    assert nesterov.nesterov and nesterov.momentum == 0.9
    assert make_optimizer("sgd", task).momentum == 0.0


def _accuracies(out_dir, name, seeds):
    rows = []
    for seed in seeds:
        with open(out_dir / "runs" / f"{name}_seed{seed}.csv") as f:
            rows.append([float(r["test_accuracy"]) for r in csv.DictReader(f)])
    return np.array(rows)


def test_entries_run_and_the_summary_reports_the_average_epoch_std(tmp_path):
    seeds = (0, 1)
    run_comparison(
        optimizers=AMORTIZED_OPTIMIZERS, seeds=seeds, epochs=2, out_dir=tmp_path,
        jit_compile=False, stream=io.StringIO(),
    )
    check_outputs(tmp_path, AMORTIZED_OPTIMIZERS, seeds, 2)
    summary = (tmp_path / "summary.md").read_text().splitlines()
    assert "| test accuracy: avg. per-epoch std |" in "\n".join(summary)
    for name in AMORTIZED_OPTIMIZERS:
        (row,) = [line for line in summary if line.startswith(f"| {name} |")]
        reported = float(row.rstrip(" |").split("|")[-1])
        wanted = _accuracies(tmp_path, name, seeds).std(axis=0).mean()
        assert reported == pytest.approx(wanted, abs=5e-5)


def test_cifar10_resnet34_task_reads_tfds(tmp_path):
    """The real `tfds.load` path, fed by TFDS's mock data instead of a download."""
    import tensorflow_datasets as tfds

    task = TASKS["cifar10_resnet34"]
    with tfds.testing.mock_data(num_examples=256):
        first = [next(iter(task.datasets(seed)[0])) for seed in (0, 0, 1)]
        test_images, _ = next(iter(task.datasets(0)[1]))
    images, labels = first[0]
    assert images.shape == (128, 32, 32, 3) and labels.shape == (128,)
    assert test_images.shape == (256, 32, 32, 3)
    # Augmentation is reproducible from the seed and differs between seeds.
    np.testing.assert_array_equal(first[0][0].numpy(), first[1][0].numpy())
    assert not np.array_equal(first[0][0].numpy(), first[2][0].numpy())
    model = task.build_model()
    assert model.count_params() == 21_299_146  # CIFAR ResNet-34 (21.3M weights)
    assert model(images[:2]).shape == (2, 10)


@pytest.mark.slow
def test_cifar10_resnet34_runs_in_the_runner(tmp_path):
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=256):
        run_comparison(
            task="cifar10_resnet34", optimizers=["am2_sgd"], seeds=(0,), epochs=1,
            out_dir=tmp_path, jit_compile=False, stream=io.StringIO(),
        )
    check_outputs(tmp_path, ["am2_sgd"], (0,), 1)
