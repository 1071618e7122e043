"""The comparison runner (`python -m keras_momenta.compare`): outputs,
resumption, the step-size sweep, schedules, data errors and the command line."""

import csv
import dataclasses
import io
import json

import keras
import numpy as np
import pytest
import tensorflow as tf

from keras_momenta.compare import OPTIMIZERS, TASKS, MissingDataError, Task, data, run_comparison
from keras_momenta.compare import optimizers as entries
from keras_momenta.compare import runner
from keras_momenta.compare.__main__ import main
from keras_momenta.compare.models import mlp

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


def read_csv(path):
    with open(path) as f:
        return list(csv.DictReader(f))


def results(out_dir):
    return json.loads((out_dir / "results.json").read_text())


def final_runs(out_dir, entry=None):
    return [
        r for r in results(out_dir)["runs"]
        if r["run"]["role"] == "final" and entry in (None, r["run"]["entry"])
    ]


def check_outputs(out_dir, optimizers, seeds, epochs, metric="accuracy"):
    """Every run's history is complete and finite; plots, summary, combined files exist."""
    record = results(out_dir)
    assert record["settings"]["epochs"] == epochs
    assert {"keras", "tensorflow", "keras_momenta", "python"} <= set(record["versions"])
    for name in optimizers:
        runs = final_runs(out_dir, name)
        assert sorted(r["run"]["seed"] for r in runs) == sorted(seeds)
        for run in runs:
            history = run["history"]
            assert [row["epoch"] for row in history] == list(range(1, epochs + 1))
            for column in ("loss", f"val_{metric}", "test_loss", f"test_{metric}", "seconds"):
                assert np.all(np.isfinite([row[column] for row in history])), (name, column)
            assert run["optimizer"]["config"]  # every hyperparameter
            assert run["wall_time"] > 0
    csv_rows = read_csv(out_dir / "results.csv")
    assert len(csv_rows) == sum(len(r["history"]) for r in record["runs"])
    for plot in ("training_loss.png", f"test_{metric}.png"):
        assert (out_dir / plot).read_bytes().startswith(PNG_SIGNATURE)
    summary = (out_dir / "summary.md").read_text().splitlines()
    for name in optimizers:
        (row,) = [line for line in summary if line.startswith(f"| {name} |")]
        assert row.count("±") == 5, row


def test_runner_writes_histories_plots_summary_and_combined_results(tmp_path):
    stream = io.StringIO()
    out = run_comparison(
        optimizers=["expectigrad", "adam"], seeds=(0, 1), epochs=2, out_dir=tmp_path,
        stream=stream, print_every=1,
    )
    assert out == tmp_path
    check_outputs(tmp_path, ["expectigrad", "adam"], (0, 1), 2)
    text = stream.getvalue()
    rate = entries.tuned_learning_rates()["mnist1d_mlp"]["adam"]  # the committed sweep's
    assert f"[4/4] adam lr {rate:g} seed 1  epoch   2/2" in text and "ETA" in text
    assert f"Results are in {tmp_path.resolve()}" in text
    adam = final_runs(tmp_path, "adam")[0]
    assert adam["optimizer"]["class_name"] == "Adam"
    assert adam["optimizer"]["config"]["learning_rate"] == pytest.approx(rate)


class _Interrupt(keras.callbacks.Callback):
    """Stops the process the way Ctrl-C does, after `epochs` epochs of a run."""

    def __init__(self, epochs):
        super().__init__()
        self.epochs = epochs

    def on_epoch_end(self, epoch, logs=None):
        if epoch + 1 == self.epochs:
            raise KeyboardInterrupt


class _CountBatches(keras.callbacks.Callback):
    def __init__(self):
        super().__init__()
        self.batches = 0

    def on_train_batch_end(self, batch, logs=None):
        self.batches += 1


def _noisy_digits_task():
    """Dropout (layer random state) and augmentation (per-example seeds), for
    the resumption test."""

    def build():
        keras.utils.set_random_seed(7)  # unused by the runner's seed: shows reseeding is harmless
        return keras.Sequential([
            keras.Input((64,)), keras.layers.Dense(32, activation="relu"),
            keras.layers.Dropout(0.3), keras.layers.Dense(10, activation="softmax"),
        ])

    def augment(features, label, seed):
        return features + 0.1 * tf.random.stateless_normal(tf.shape(features), seed), label

    return Task(
        name="noisy_digits", paper="test", stands_for="a test", description="digits, noise",
        load=data.digits, build_model=build, epochs=3, batch_size=64,
        optimizers=("hb_ita", "am2_sgd"), augment=augment, scale="reduced",
    )


@pytest.fixture
def noisy_digits(monkeypatch):
    task = _noisy_digits_task()
    monkeypatch.setitem(TASKS, task.name, task)
    return task.name


def _histories(out_dir):
    return {r["run"]["entry"]: r["history"] for r in final_runs(out_dir)}


def test_an_interrupted_command_continues_exactly_where_it_stopped(tmp_path, noisy_digits):
    """Model, optimizer state (IGT's and AM2-SGD's), data position, augmentation
    and dropout state all come back: the curves equal an uninterrupted run's."""
    arguments = dict(task=noisy_digits, seeds=(0,), jit_compile=False, stream=io.StringIO())
    run_comparison(out_dir=tmp_path / "whole", **arguments)
    with pytest.raises(KeyboardInterrupt):
        run_comparison(out_dir=tmp_path / "parts", callbacks=[_Interrupt(2)], **arguments)
    state = json.loads((tmp_path / "parts/runs/hb_ita/lr0.01_seed0/state.json").read_text())
    assert state["epochs_done"] == 2
    counter = _CountBatches()
    run_comparison(out_dir=tmp_path / "parts", callbacks=[counter], **arguments)
    # hb_ita trains its last epoch, am2_sgd all three.
    assert counter.batches == 4 * -(-data.digits().train_examples // 64)
    whole, parts = _histories(tmp_path / "whole"), _histories(tmp_path / "parts")
    for name in ("hb_ita", "am2_sgd"):
        for a, b in zip(whole[name], parts[name], strict=True):
            for key in ("loss", "val_accuracy", "test_loss"):
                assert a[key] == pytest.approx(b[key], rel=1e-6, abs=1e-7), (name, a["epoch"], key)

    again = _CountBatches()
    run_comparison(out_dir=tmp_path / "parts", callbacks=[again], **arguments)
    assert again.batches == 0  # finished runs are read back, not trained


def test_training_batches_depend_on_the_seed_and_epoch_only():
    task = _noisy_digits_task()
    splits = task.load()

    def first(seed, epoch):
        features, _ = next(iter(runner.training_batches(task, splits, seed, epoch, 16)))
        return features.numpy()

    np.testing.assert_array_equal(first(0, 1), first(0, 1))
    assert not np.array_equal(first(0, 1), first(0, 2))
    assert not np.array_equal(first(0, 1), first(1, 1))


def test_a_rerun_with_other_settings_is_refused(tmp_path):
    run_comparison(optimizers=["adam"], seeds=(0,), epochs=1, out_dir=tmp_path,
                   jit_compile=False, stream=io.StringIO())
    with pytest.raises(ValueError, match=r"epochs=1 \(now 2\).*another `--out`"):
        run_comparison(optimizers=["adam"], seeds=(0,), epochs=2, out_dir=tmp_path,
                       jit_compile=False, stream=io.StringIO())


def test_the_sweep_chooses_on_validation_data_and_reuses_the_first_seed(tmp_path):
    counter = _CountBatches()
    grid = (1e-4, 1e-3, 1e-2)
    run_comparison(
        optimizers=["adam"], seeds=(0, 1), epochs=1, tune=True, grid=grid, out_dir=tmp_path,
        jit_compile=False, stream=io.StringIO(), callbacks=[counter],
    )
    record = results(tmp_path)
    sweep = {float(k): v for k, v in record["sweeps"]["adam"].items()}
    assert sorted(sweep) == list(grid)
    assert record["learning_rates"]["adam"] == max(sweep, key=sweep.get)
    # Three sweep runs and one more seed: the first seed's run is the sweep's.
    assert counter.batches == 4 * 36
    assert {r["run"]["seed"] for r in final_runs(tmp_path)} == {0, 1}
    assert "Step-size sweep" in (tmp_path / "summary.md").read_text()


def test_a_sweep_extends_past_the_end_where_the_best_step_size_lies():
    trained = []

    def train_at(rate):
        trained.append(rate)
        return [{"val_accuracy": -abs(np.log10(rate) + 4.2)}]  # best at 10^-4.2

    task = TASKS["mnist1d_mlp"]
    grid = entries.log_grid(1e-2)
    results = runner.sweep(train_at, grid, select=lambda r: runner.select_learning_rate(task, r))
    assert trained[: len(grid)] == list(grid)
    assert trained[len(grid):] == [3.16e-4, 1e-4, 3.16e-5]  # stops once the best is inside
    assert runner.select_learning_rate(task, results) == 1e-4
    capped = []
    runner.sweep(lambda rate: capped.append(rate) or [{"val_accuracy": rate}], grid,
                 select=lambda r: runner.select_learning_rate(task, r))
    assert len(capped) == len(grid) + runner.EXTENSION_POINTS
    fixed = []
    runner.sweep(lambda rate: fixed.append(rate) or [{"val_accuracy": rate}], grid, extend=False)
    assert fixed == list(grid)


def test_selection_maximises_accuracy_minimises_loss_and_never_picks_nan():
    def history(value):
        return [{"val_accuracy": value, "val_loss": value}]

    sweep = {0.1: history(float("nan")), 0.01: history(0.5), 0.001: history(0.7)}
    task = TASKS["mnist1d_mlp"]
    assert runner.select_learning_rate(task, sweep) == 0.001
    by_loss = dataclasses.replace(task, selection="val_loss")
    assert runner.select_learning_rate(by_loss, sweep) == 0.01


def test_step_sizes_come_from_overrides_then_the_committed_sweep_then_defaults(monkeypatch):
    task = TASKS["mnist1d_mlp"]
    monkeypatch.setattr(entries, "tuned_learning_rates", lambda: {task.name: {"adam": 0.005}})
    chosen = runner._starting_learning_rates(task, ("adam", "sgd"), None)
    assert chosen == {"adam": 0.005, "sgd": OPTIMIZERS["sgd"].learning_rate}
    assert runner._starting_learning_rates(task, ("adam", "sgd"), 0.2) == {"adam": 0.2, "sgd": 0.2}
    assert runner._starting_learning_rates(task, ("adam",), {"adam": 0.3}) == {"adam": 0.3}
    with pytest.raises(ValueError, match="learning rate of 'adam' must be a positive"):
        runner._starting_learning_rates(task, ("adam",), -1.0)


def test_committed_step_sizes_name_known_tasks_and_entries():
    for task, rates in entries.tuned_learning_rates().items():
        assert task in TASKS
        assert set(rates) <= set(OPTIMIZERS)


@pytest.mark.parametrize("epochs", [9, 30])
def test_schedules_follow_the_length_of_the_run(epochs):
    task = TASKS["mnist1d_mlp"]
    steps = 10 * epochs
    step = dataclasses.replace(task, schedule="step", decay_at=(1 / 3, 2 / 3))
    schedule = entries.learning_rate_schedule(step, 0.1, 10, epochs)
    rates = [float(schedule(s)) for s in (0, steps // 3, steps // 3 + 1, 2 * steps // 3 + 1)]
    np.testing.assert_allclose(rates, [0.1, 0.1, 0.01, 0.001], rtol=1e-6)
    linear = entries.learning_rate_schedule(dataclasses.replace(task, schedule="linear"), 0.1, 10, epochs)
    assert float(linear(steps)) == 0.0
    assert float(linear(steps // 2)) == pytest.approx(0.05)
    assert entries.learning_rate_schedule(task, 0.1, 10, epochs) == 0.1


def test_every_entry_builds_an_optimizer_and_has_a_grid_of_the_same_size():
    for name, entry in OPTIMIZERS.items():
        optimizer = entry.build(entry.learning_rate)
        assert isinstance(optimizer, keras.optimizers.Optimizer), name
        assert len(entry.grid) == entries.GRID_POINTS and entry.learning_rate in entry.grid
        assert all(b / a == pytest.approx(10**0.5, rel=1e-2) for a, b in zip(entry.grid, entry.grid[1:]))


def test_every_task_is_described_and_its_entries_exist():
    for task in TASKS.values():
        assert set(task.optimizers) <= set(OPTIMIZERS), task.name
        assert task.stands_for and task.data and task.description, task.name
        assert task.scale in ("full", "reduced"), task.name


def test_unknown_names_are_refused(tmp_path):
    with pytest.raises(ValueError, match="known: .*mnist1d_mlp"):
        run_comparison(task="cifar", out_dir=tmp_path)
    with pytest.raises(ValueError, match="known: adadelta"):
        run_comparison(optimizers=["lamb"], seeds=(0,), epochs=1, out_dir=tmp_path, stream=io.StringIO())


def test_a_task_without_its_data_says_where_to_put_it(tmp_path, capsys):
    with pytest.raises(MissingDataError, match=r"'mnist' is not prepared in .*--data-dir DIR"):
        run_comparison(task="mnist_mlp", data_dir=str(tmp_path), download=False,
                       out_dir=tmp_path / "out", stream=io.StringIO())
    with pytest.raises(SystemExit) as exit_info:
        main(["--task", "mnist_mlp", "--data-dir", str(tmp_path), "--no-download",
              "--out", str(tmp_path / "cli")])
    assert exit_info.value.code == 2
    assert "tfds build mnist" in capsys.readouterr().err


def test_mnist_task_reads_tfds(tmp_path):
    """The real `tfds` path, fed by TFDS's mock data instead of a download."""
    import tensorflow_datasets as tfds

    with tfds.testing.mock_data(num_examples=300):
        splits = TASKS["mnist_mlp"].load()
        features, labels = next(iter(splits.train.batch(128)))
        assert features.shape == (128, 784) and labels.shape == (128,)
        assert 0.0 <= float(np.min(features)) and float(np.max(features)) <= 1.0
        run_comparison(
            task="mnist_mlp", optimizers=["expectigrad"], seeds=(0,), epochs=1, batch_size=64,
            out_dir=tmp_path, jit_compile=False, stream=io.StringIO(),
        )
    check_outputs(tmp_path, ["expectigrad"], (0,), 1)


def test_command_line(tmp_path, capsys):
    main(["--list"])
    listing = capsys.readouterr().out
    for task in TASKS.values():
        assert task.name in listing and task.data in listing
    main([
        "--optimizers", "sgd_momentum", "adam", "--seeds", "0", "--epochs", "1",
        "--batch-size", "200", "--learning-rate", "sgd_momentum=0.02", "adam=0.002",
        "--out", str(tmp_path), "--no-xla",
    ])
    check_outputs(tmp_path, ["sgd_momentum", "adam"], (0,), 1)
    assert results(tmp_path)["learning_rates"] == {"sgd_momentum": 0.02, "adam": 0.002}
    assert final_runs(tmp_path)[0]["steps_per_epoch"] == 18  # 3600 examples, batch 200
    assert "Results are in" in capsys.readouterr().out
    for wrong in (["--grid", "0.1"], ["--learning-rate", "adam:0.1"]):
        with pytest.raises(SystemExit):
            main(wrong + ["--out", str(tmp_path / "x")])


def test_the_experiments_table_covers_every_task_and_is_printed(capsys):
    import pathlib
    import re

    from keras_momenta.compare import experiments

    named = set()
    for e in experiments.EXPERIMENTS:
        assert e.verdict in experiments.VERDICTS, e.experiment
        assert bool(e.reduced) == (e.verdict != "no reduced version"), e.experiment
        assert bool(e.measured) == (e.verdict not in ("not run yet", "no reduced version")), e.experiment
        named |= set(re.findall(r"--task (\w+)", e.full + " " + e.reduced))
    assert named <= set(TASKS)
    assert set(TASKS) - named == {"mnist1d_mlp"}  # the demo stands for no one experiment
    main(["--experiments"])
    printed = capsys.readouterr().out
    assert printed == experiments.table()
    main(["--experiments", "short"])
    short = capsys.readouterr().out
    assert short == experiments.table(findings=False) != printed
    for table, columns in ((printed, 7), (short, 5)):
        rows = table.splitlines()
        assert len(rows) == 2 + len(experiments.EXPERIMENTS)
        # A "|" inside a cell, even in backticks, would split it on GitHub.
        assert all(row.count("|") == columns + 1 for row in rows), table
    root = pathlib.Path(__file__).resolve().parents[1]
    readme = (root / "README.md").read_text()
    held = re.search(r"<!-- experiments-short -->\n(.*)<!-- /experiments-short -->", readme, re.S)
    assert held and held.group(1) == short, "README's table is stale: paste `--experiments short`"
    for e in experiments.EXPERIMENTS:  # the docs site shows each results link (tests/test_docs.py)
        assert not e.results or (root / e.results).exists(), e.results


@pytest.mark.slow
def test_default_run(tmp_path):
    """README's first command: the default task, optimizers, seeds and epochs."""
    main(["--out", str(tmp_path)])
    task = TASKS["mnist1d_mlp"]
    check_outputs(tmp_path, task.optimizers, (0, 1, 2), task.epochs)
