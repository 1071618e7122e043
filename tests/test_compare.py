"""The comparison runner (`python -m keras_momenta.compare`)."""

import csv
import io

import numpy as np
import pytest

from keras_momenta.compare import OPTIMIZERS, TASKS, run_comparison
from keras_momenta.compare.__main__ import main
from keras_momenta.compare.runner import METRIC_COLUMNS

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def check_outputs(out_dir, optimizers, seeds, epochs):
    for name in optimizers:
        for seed in seeds:
            rows = read_csv(out_dir / "runs" / f"{name}_seed{seed}.csv")
            assert [int(r["epoch"]) for r in rows] == list(range(1, epochs + 1))
            for column in METRIC_COLUMNS:
                values = np.array([float(r[column]) for r in rows])
                assert np.all(np.isfinite(values)), (name, column)
            accuracy = float(rows[-1]["test_accuracy"])
            assert 0.0 <= accuracy <= 1.0
    for plot in ("training_loss.png", "test_accuracy.png"):
        assert (out_dir / plot).read_bytes().startswith(PNG_SIGNATURE)
    summary = (out_dir / "summary.md").read_text().splitlines()
    for name in optimizers:
        (row,) = [line for line in summary if line.startswith(f"| {name} |")]
        assert row.count("±") == 4, row


def test_runner_writes_csvs_plots_and_table(tmp_path):
    stream = io.StringIO()
    out = run_comparison(
        optimizers=["expectigrad", "adam"], seeds=(0, 1), epochs=2, out_dir=tmp_path, stream=stream
    )
    assert out == tmp_path
    check_outputs(tmp_path, ["expectigrad", "adam"], (0, 1), 2)
    text = stream.getvalue()
    assert "[4/4] adam seed 1" in text and f"Results are in {tmp_path.resolve()}" in text


def test_runs_are_reproducible_by_seed(tmp_path):
    for run in ("a", "b"):
        run_comparison(
            optimizers=["expectigrad"], seeds=(3,), epochs=2, out_dir=tmp_path / run, stream=io.StringIO()
        )
    first, second = (read_csv(tmp_path / run / "runs" / "expectigrad_seed3.csv") for run in "ab")
    for a, b in zip(first, second):
        for column in METRIC_COLUMNS:
            assert float(a[column]) == pytest.approx(float(b[column]), rel=1e-6)


def test_command_line(tmp_path, capsys):
    main(["--optimizers", "sgd_momentum", "--seeds", "0", "--epochs", "1", "--out", str(tmp_path), "--no-xla"])
    check_outputs(tmp_path, ["sgd_momentum"], (0,), 1)
    assert "Results are in" in capsys.readouterr().out


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="known: .*mnist1d_mlp"):
        run_comparison(task="cifar", out_dir=tmp_path)
    with pytest.raises(ValueError, match="known: adam"):
        run_comparison(optimizers=["lamb"], seeds=(0,), epochs=1, out_dir=tmp_path, stream=io.StringIO())


def test_every_task_default_optimizer_has_an_entry():
    for task in TASKS.values():
        assert set(task.default_optimizers) <= set(OPTIMIZERS)


def test_mnist_task_reads_tfds(tmp_path):
    """The real `tfds.load` path, fed by TFDS's mock data instead of a download."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=300):
        train, test = TASKS["mnist_mlp"].datasets(0)
        features, labels = next(iter(train))
        assert features.shape == (128, 784) and labels.shape == (128,)
        assert 0.0 <= float(np.min(features)) and float(np.max(features)) <= 1.0
        run_comparison(
            task="mnist_mlp", optimizers=["expectigrad"], seeds=(0,), epochs=1,
            out_dir=tmp_path, stream=io.StringIO(),
        )
    check_outputs(tmp_path, ["expectigrad"], (0,), 1)


@pytest.mark.slow
def test_default_run(tmp_path, capsys):
    """README's first command: the default task, optimizers, seeds and epochs."""
    main(["--out", str(tmp_path)])
    task = TASKS["mnist1d_mlp"]
    check_outputs(tmp_path, task.default_optimizers, (0, 1, 2), task.epochs)


def test_igt_entries_decay_linearly_to_zero(tmp_path):
    from keras_momenta.compare.optimizers import make_optimizer

    task = TASKS["mnist1d_mlp"]
    for name in ("sgd_linear", "hb_linear", "adam_linear", "ita", "hb_ita", "adam_ita"):
        optimizer = make_optimizer(name, task)
        inner = getattr(optimizer, "inner_optimizer", optimizer)
        schedule = inner._learning_rate
        assert float(schedule(task.total_steps)) == 0.0
        assert float(schedule(task.total_steps // 2)) == pytest.approx(float(schedule(0)) / 2)
    run_comparison(optimizers=["ita"], seeds=(0,), epochs=2, out_dir=tmp_path, stream=io.StringIO())
    check_outputs(tmp_path, ["ita"], (0,), 2)
