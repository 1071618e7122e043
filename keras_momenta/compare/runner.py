"""Train a task with several optimizers and seeds; write CSVs, plots, a table."""

import csv
import dataclasses
import pathlib
import sys
import time

import keras
import numpy as np

from keras_momenta.callbacks import SwapEvaluationWeights
from keras_momenta.compare import report
from keras_momenta.compare.optimizers import make_optimizer
from keras_momenta.compare.tasks import TASKS

METRIC_COLUMNS = ("train_loss", "train_accuracy", "test_loss", "test_accuracy")


class _EpochLog(keras.callbacks.Callback):
    """Collects per-epoch metrics and prints progress."""

    def __init__(self, label, epochs, print_every, stream):
        super().__init__()
        self.label, self.epochs, self.print_every, self.stream = label, epochs, print_every, stream
        self.rows = []
        self.start = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        logs = logs or {}
        row = {
            "epoch": epoch + 1,
            "train_loss": logs.get("loss"),
            "train_accuracy": logs.get("accuracy"),
            "test_loss": logs.get("val_loss"),
            "test_accuracy": logs.get("val_accuracy"),
            "seconds": time.perf_counter() - self.start,
        }
        self.rows.append(row)
        if (epoch + 1) % self.print_every == 0 or epoch + 1 == self.epochs:
            print(
                f"  {self.label}  epoch {epoch + 1:>3}/{self.epochs}"
                f"  loss {row['train_loss']:.4f}  test acc {row['test_accuracy']:.4f}"
                f"  ({row['seconds']:.1f}s)",
                file=self.stream,
                flush=True,
            )


def write_run_csv(path, rows):
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=["epoch", *METRIC_COLUMNS, "seconds"])
        writer.writeheader()
        writer.writerows(rows)


def train_one(task, optimizer_name, seed, epochs, jit_compile, progress):
    keras.utils.set_random_seed(seed)
    train, test = task.datasets(seed)
    model = task.build_model()
    model.compile(
        optimizer=make_optimizer(optimizer_name, task),
        loss=task.loss,
        metrics=[task.metric],
        jit_compile=jit_compile,
    )
    # The pipelines shuffle with the seed themselves. Test metrics are taken
    # at each optimizer's answer (IGT's true iterate, AM option II's average).
    model.fit(
        train,
        validation_data=test,
        epochs=epochs,
        shuffle=False,
        verbose=0,
        callbacks=[SwapEvaluationWeights(), progress],
    )
    return progress.rows


def run_comparison(
    task="mnist1d_mlp",
    optimizers=None,
    seeds=(0, 1, 2),
    epochs=None,
    out_dir=None,
    jit_compile=True,
    print_every=10,
    stream=None,
):
    """Train `task` with each optimizer entry and seed; return the output folder.

    Writes, under `out_dir` (default `results/<task>`):
      runs/<optimizer>_seed<seed>.csv   per-epoch metrics of each run
      training_loss.png, test_accuracy.png   mean ± std over seeds per optimizer
      summary.md                        final metrics, mean ± std over seeds
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; known: {', '.join(sorted(TASKS))}.")
    task = TASKS[task]
    stream = stream or sys.stdout
    optimizers = tuple(optimizers or task.default_optimizers)
    epochs = epochs or task.epochs
    # Optimizer entries with schedules read the run's length from the task.
    task = dataclasses.replace(task, epochs=epochs)
    out_dir = pathlib.Path(out_dir or pathlib.Path("results") / task.name)
    runs_dir = out_dir / "runs"
    runs_dir.mkdir(parents=True, exist_ok=True)

    total = len(optimizers) * len(seeds)
    print(
        f"Task {task.name}: {task.description}\n"
        f"{len(optimizers)} optimizers x {len(seeds)} seeds x {epochs} epochs -> {out_dir}",
        file=stream,
        flush=True,
    )
    results = {}
    for i, name in enumerate(optimizers):
        for j, seed in enumerate(seeds):
            label = f"[{i * len(seeds) + j + 1}/{total}] {name} seed {seed}"
            progress = _EpochLog(label, epochs, print_every, stream)
            rows = train_one(task, name, seed, epochs, jit_compile, progress)
            write_run_csv(runs_dir / f"{name}_seed{seed}.csv", rows)
            results.setdefault(name, []).append(rows)

    curves = {
        name: {col: np.array([[r[col] for r in rows] for rows in runs], float) for col in METRIC_COLUMNS}
        for name, runs in results.items()
    }
    report.plot_curves(curves, "train_loss", out_dir / "training_loss.png", task, log_scale=True)
    report.plot_curves(curves, "test_accuracy", out_dir / "test_accuracy.png", task)
    table = report.summary_table(curves, task, seeds, epochs)
    (out_dir / "summary.md").write_text(table)
    print(f"\n{table}\nResults are in {out_dir.resolve()}", file=stream, flush=True)
    return out_dir
