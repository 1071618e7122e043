"""Train a task with several optimizers, step sizes and seeds, resumably.

Each run (optimizer entry, step size, seed) lives in its own folder under
`<out>/runs/`: its per-epoch history and, after every epoch, a checkpoint of
the model, the optimizer state and the layers' random-number state. Training
data are shuffled and augmented from the seed and the epoch, so a run that
continues from its checkpoint sees the batches an uninterrupted run sees, and
rerunning a command continues where it stopped; finished runs are read back.
"""

import csv
import dataclasses
import json
import math
import os
import pathlib
import platform
import sys
import time

import keras
import numpy as np
import tensorflow as tf

from keras_momenta.callbacks import SwapEvaluationWeights
from keras_momenta.compare import data
from keras_momenta.compare import optimizers as entries
from keras_momenta.compare import report
from keras_momenta.compare.tasks import TASKS


def training_batches(task, splits, seed, epoch, batch_size):
    """The batches of one epoch: their order and augmentation are a function
    of (seed, epoch) only."""
    key = seed * 1_000_003 + epoch
    examples = splits.train
    if task.shuffle:
        examples = examples.shuffle(min(splits.train_examples, task.shuffle_buffer), seed=key)
    augment = splits.augment or task.augment
    if augment is not None:
        examples = examples.enumerate().map(
            lambda index, example: augment(*example, tf.stack([tf.constant(key, tf.int64), index])),
            num_parallel_calls=tf.data.AUTOTUNE,
        )
    return examples.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def evaluation_batches(task, dataset):
    return dataset.batch(task.evaluation_batch_size).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True)
class Run:
    entry: str
    learning_rate: float
    seed: int
    # "tuning" (a step size of the sweep, on the first seed) or "final".
    role: str = "final"

    @property
    def folder(self):
        return pathlib.Path("runs") / self.entry / f"lr{self.learning_rate:g}_seed{self.seed}"

    def label(self):
        return f"{self.entry} lr {self.learning_rate:g} seed {self.seed}"


def _seed_generators(model):
    return [
        generator
        for layer in model._flatten_layers(include_self=True)
        for generator in getattr(layer, "_seed_generators", [])
    ]


def _write_atomically(path, text):
    temporary = path.with_name(path.name + ".tmp")
    temporary.write_text(text)
    os.replace(temporary, path)


class _Checkpoint(keras.callbacks.Callback):
    """At the end of each epoch: the test metrics (at the optimizer's answer,
    which `SwapEvaluationWeights(swap_on_epoch=True)` has put in the model),
    the history row, and a checkpoint to continue from. After the last epoch
    (`epochs`) the row also gets `final_metrics(model)`'s values."""

    def __init__(self, folder, test, history, progress, wall_time, epochs=None, final_metrics=None):
        super().__init__()
        self.epochs, self.final_metrics = epochs, final_metrics
        self.folder, self.test, self.history, self.progress = folder, test, history, progress
        self.wall_time = wall_time
        self.started = time.perf_counter()

    def on_epoch_begin(self, epoch, logs=None):
        self.started = time.perf_counter()

    def on_epoch_end(self, epoch, logs=None):
        test = self.model.evaluate(self.test, verbose=0, return_dict=True)
        if self.final_metrics is not None and epoch + 1 == self.epochs:
            test_extra = {k: float(v) for k, v in self.final_metrics(self.model).items()}
        else:
            test_extra = {}
        self.wall_time += time.perf_counter() - self.started
        row = {"epoch": epoch + 1, **{k: float(v) for k, v in (logs or {}).items()}}
        row.update({f"test_{k}": float(v) for k, v in test.items()})
        row.update(test_extra)
        row["seconds"] = self.wall_time
        self.history.append(row)
        write_history(self.folder / "history.csv", self.history)
        # The state file names the checkpoint: written last, it is never ahead of it.
        weights = self.folder / f"checkpoint-{epoch + 1}.weights.h5"
        self.model.save_weights(weights)
        np.savez(
            self.folder / f"checkpoint-{epoch + 1}.rng.npz",
            *[np.asarray(g.state.numpy()) for g in _seed_generators(self.model)],
        )
        _write_atomically(
            self.folder / "state.json",
            json.dumps({"epochs_done": epoch + 1, "wall_time": self.wall_time}),
        )
        for old in self.folder.glob("checkpoint-*"):
            if not old.name.startswith(f"checkpoint-{epoch + 1}."):
                old.unlink()
        self.progress.epoch_done(row)


def write_history(path, rows):
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)


def read_history(path):
    with open(path) as f:
        return [
            # A column only some rows have (the final metrics) is empty in the others.
            {k: (int(v) if k == "epoch" else float(v)) for k, v in row.items() if v != ""}
            for row in csv.DictReader(f)
        ]


class _Progress:
    """Prints a line every `print_every` epochs of a run, with an ETA over all
    planned epochs from the mean epoch time so far."""

    def __init__(self, total_epochs, print_every, stream):
        self.remaining, self.print_every, self.stream = total_epochs, print_every, stream
        self.trained_epochs, self.trained_seconds = 0, 0.0
        self.prefix, self.label, self.epochs, self.last = "", "", 0, time.perf_counter()

    def start(self, label, epochs, done):
        self.label, self.epochs = self.prefix + label, epochs
        self.remaining -= done
        self.last = time.perf_counter()

    def epoch_done(self, row):
        now = time.perf_counter()
        self.trained_epochs += 1
        self.trained_seconds += now - self.last
        self.last = now
        self.remaining -= 1
        epoch = row["epoch"]
        if epoch % self.print_every and epoch != self.epochs:
            return
        eta = self.remaining * self.trained_seconds / self.trained_epochs
        metrics = "  ".join(
            f"{key} {row[key]:.4f}" for key in ("loss", "val_accuracy", "test_accuracy", "test_loss")
            if key in row
        )
        print(
            f"  {self.label}  epoch {epoch:>3}/{self.epochs}  {metrics}"
            f"  ({row['seconds']:.1f}s, ETA {_duration(eta)})",
            file=self.stream,
            flush=True,
        )


def _duration(seconds):
    minutes, seconds = divmod(int(round(seconds)), 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}h{minutes:02d}m" if hours else f"{minutes}m{seconds:02d}s"


def train_run(task, splits, run, settings, out_dir, progress, callbacks=()):
    """Train one run, continuing from its checkpoint; return its history."""
    folder = out_dir / run.folder
    folder.mkdir(parents=True, exist_ok=True)
    state_path = folder / "state.json"
    state = json.loads(state_path.read_text()) if state_path.exists() else {}
    done = state.get("epochs_done", 0)
    history = read_history(folder / "history.csv")[:done] if done else []
    epochs = settings["epochs"]
    progress.start(run.label(), epochs, done)
    if done >= epochs:
        return history

    keras.utils.set_random_seed(run.seed)
    entry = entries.entry(run.entry)
    model = task.build_model()
    if entry.wrap_model is not None:
        model = entry.wrap_model(model)
    optimizer = _optimizer(task, run, settings, splits)
    model.compile(
        optimizer=optimizer,
        loss=task.loss,
        metrics=list(task.metrics),
        jit_compile=settings["jit_compile"],
    )
    if done:
        optimizer.build(model.trainable_variables)
        model.load_weights(folder / f"checkpoint-{done}.weights.h5")
        with np.load(folder / f"checkpoint-{done}.rng.npz") as saved:
            for generator, key in zip(_seed_generators(model), saved.files):
                generator.state.assign(saved[key])
    validation = evaluation_batches(task, splits.validation)
    callbacks = [
        *(task.callbacks(model) if task.callbacks else []),
        # Validation and test metrics are taken at each optimizer's answer
        # (IGT's true iterate, AM option II's average).
        SwapEvaluationWeights(swap_on_epoch=True),
        _Checkpoint(
            folder, evaluation_batches(task, splits.test), history, progress,
            state.get("wall_time", 0.0), epochs,
            None if task.final_metrics is None else (lambda model: task.final_metrics(model, splits)),
        ),
        *callbacks,
    ]
    # One `fit` per epoch, each with its own shuffle: the runs continue one
    # another exactly (a continued `fit` is the uninterrupted run).
    for epoch in range(done, epochs):
        model.fit(
            training_batches(task, splits, run.seed, epoch, settings["batch_size"]),
            validation_data=validation,
            initial_epoch=epoch,
            epochs=epoch + 1,
            shuffle=False,  # done above, from the seed and the epoch
            verbose=0,
            callbacks=callbacks,
        )
    return history


def versions():
    import keras_momenta

    return {
        "python": platform.python_version(),
        "keras_momenta": keras_momenta.__version__,
        "keras": keras.__version__,
        "tensorflow": tf.__version__,
        "numpy": np.__version__,
        "backend": keras.backend.backend(),
    }


def _settings_of(out_dir, settings):
    """The settings this output folder's runs were made with: a rerun must
    ask for the same ones (else its curves would mix two settings)."""
    path = out_dir / "settings.json"
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != settings:
            different = {k: (saved.get(k), v) for k, v in settings.items() if saved.get(k) != v}
            raise ValueError(
                f"{out_dir} holds runs made with other settings "
                + ", ".join(f"{k}={old!r} (now {new!r})" for k, (old, new) in different.items())
                + ": rerun with those settings to continue them, or choose another `--out`."
            )
    else:
        _write_atomically(path, json.dumps(settings, indent=1))


# Grid points a sweep may add beyond either end of an entry's grid.
EXTENSION_POINTS = 3


def sweep(train_at, grid, extend=True, select=None):
    """{step size: history} over `grid`; while the best is at an end, and
    at most `EXTENSION_POINTS` times, one more step size beyond that end
    (a factor √10 further), so that no entry's choice is capped by its grid."""
    results = {rate: train_at(rate) for rate in grid}
    for _ in range(EXTENSION_POINTS if extend else 0):
        best = select(results)
        rates = sorted(results)
        if best not in (rates[0], rates[-1]) or len(rates) < 2:
            break
        # In log space, where the grid is even: its points are rounded.
        lower = best == rates[0]
        step = round(math.log10(rates[1] / rates[0] if lower else rates[-1] / rates[-2]), 2)
        rate = float(f"{10 ** round(math.log10(best) + (-step if lower else step), 2):.3g}")
        results[rate] = train_at(rate)
    return results


def _final_value(history, key):
    return history[-1].get(key, float("nan"))


def select_learning_rate(task, results):
    """The step size whose run ends best on the task's validation metric
    (NaN, a diverged run, never wins)."""
    def score(item):
        value = _final_value(item[1], task.selection)
        if not math.isfinite(value):
            return -math.inf
        return value if task.maximise else -value

    return max(results.items(), key=score)[0]


def run_comparison(
    task="mnist1d_mlp",
    optimizers=None,
    seeds=(0, 1, 2),
    epochs=None,
    batch_size=None,
    learning_rates=None,
    tune=False,
    grid=None,
    data_dir=None,
    download=True,
    out_dir=None,
    jit_compile=True,
    print_every=10,
    stream=None,
    callbacks=(),
):
    """Train `task` with each optimizer entry and seed; return the output folder.

    Step sizes: `learning_rates` ({entry: value}, or one value for all) if
    given, else the committed sweep's for this task
    (`tuned_learning_rates.json`), else the entry's default. With
    `tune=True` each entry first trains at every step size of its grid (or
    `grid`) on the first seed, and the one that ends best on validation data
    is then run with every seed.

    Writes, under `out_dir` (default `results/<task>`):
      runs/<entry>/lr<step size>_seed<seed>/   history.csv, checkpoint, state
      results.json, results.csv     every run: settings, hyperparameters,
                                    versions, wall time, per-epoch metrics
      training_loss.png, test_<metric>.png   mean ± std over seeds
      summary.md                    final metrics (and the sweep)
    Data sets are read from `data_dir` (TFDS's data directory, local
    files); TFDS downloads those it does not find there unless `download`
    is False (then a `MissingDataError` at once says where to put them).
    `callbacks` are passed to every run's `fit` after the runner's own.
    """
    if task not in TASKS:
        raise ValueError(f"Unknown task {task!r}; known: {', '.join(sorted(TASKS))}.")
    task = TASKS[task]
    stream = stream or sys.stdout
    names = tuple(optimizers or task.optimizers)
    for name in names:
        entries.entry(name)
    seeds = tuple(seeds)
    if not seeds:
        raise ValueError("`seeds` must name at least one seed.")
    settings = {
        "task": task.name,
        "epochs": int(epochs or task.epochs),
        "batch_size": int(batch_size or task.batch_size),
        "jit_compile": bool(jit_compile),
    }
    for key in ("epochs", "batch_size"):
        if settings[key] < 1:
            raise ValueError(f"`{key}` must be a positive integer; got {settings[key]}.")
    out_dir = pathlib.Path(out_dir or pathlib.Path("results") / task.name)
    out_dir.mkdir(parents=True, exist_ok=True)
    _settings_of(out_dir, settings)
    chosen = _starting_learning_rates(task, names, learning_rates)
    grids = {name: tuple(grid or entries.entry(name).grid) for name in names}

    with data.downloads(download):
        splits = task.load(data_dir)
    planned = sum(len(seeds) + (len(grids[name]) if tune else 0) for name in names)
    print(
        f"Task {task.name} ({task.stands_for}): {task.description}\n"
        f"{len(names)} optimizers x {len(seeds)} seeds x {settings['epochs']} epochs"
        + (f", after a sweep of {len(grids[names[0]])} step sizes each" if tune else "")
        + f" -> {out_dir}",
        file=stream,
        flush=True,
    )
    progress = _Progress(planned * settings["epochs"], print_every, stream)
    records, sweeps = [], {}

    def train(run):
        nonlocal planned
        if run.role == "tuning" and run.learning_rate not in grids[run.entry]:
            planned += 1  # a sweep's extension beyond the grid
            progress.remaining += settings["epochs"]
        progress.prefix = f"[{len(records) + 1}/{planned}] "
        history = train_run(task, splits, run, settings, out_dir, progress, callbacks)
        records.append(_record(task, run, settings, splits, history))
        return history

    for name in names:
        if tune:
            results = sweep(
                lambda rate: train(Run(name, rate, seeds[0], role="tuning")),
                grids[name], extend=grid is None,
                select=lambda results: select_learning_rate(task, results),
            )
            chosen[name] = select_learning_rate(task, results)
            sweeps[name] = {rate: _final_value(h, task.selection) for rate, h in sorted(results.items())}
        for seed in seeds:
            # With a sweep, the first seed's run is read back from the sweep's folder.
            train(Run(name, chosen[name], seed))

    finals = [r for r in records if r["run"]["role"] == "final"]
    curves = {
        name: [r["history"] for r in finals if r["run"]["entry"] == name] for name in names
    }
    metric = f"test_{task.metrics[0]}"
    report.plot_curves(curves, "loss", out_dir / "training_loss.png", task, log_scale=True)
    report.plot_curves(curves, metric, out_dir / f"{metric}.png", task)
    table = report.summary_table(task, curves, chosen, sweeps, seeds, settings["epochs"])
    (out_dir / "summary.md").write_text(table)
    results = {"settings": settings, "versions": versions(), "learning_rates": chosen,
               "sweeps": {n: {f"{k:g}": v for k, v in s.items()} for n, s in sweeps.items()},
               "runs": records}
    _write_atomically(out_dir / "results.json", json.dumps(results, indent=1))
    report.write_results_csv(out_dir / "results.csv", records)
    print(f"\n{table}\nResults are in {out_dir.resolve()}", file=stream, flush=True)
    return out_dir


def _starting_learning_rates(task, names, learning_rates):
    tuned = entries.tuned_learning_rates().get(task.name, {})
    if learning_rates is None:
        learning_rates = {}
    elif not isinstance(learning_rates, dict):
        learning_rates = {name: learning_rates for name in names}
    chosen = {}
    for name in names:
        rate = learning_rates.get(name, tuned.get(name, entries.entry(name).learning_rate))
        if not (isinstance(rate, (int, float)) and math.isfinite(rate) and rate > 0):
            raise ValueError(f"The learning rate of {name!r} must be a positive number; got {rate!r}.")
        chosen[name] = float(rate)
    return chosen


def _steps_per_epoch(splits, settings):
    return math.ceil(splits.train_examples / settings["batch_size"])


def _optimizer(task, run, settings, splits):
    return entries.make_optimizer(
        run.entry, task, run.learning_rate, _steps_per_epoch(splits, settings), settings["epochs"]
    )


def _record(task, run, settings, splits, history):
    optimizer = _optimizer(task, run, settings, splits)
    return {
        "run": dataclasses.asdict(run),
        "description": entries.entry(run.entry).description,
        **settings,
        "steps_per_epoch": _steps_per_epoch(splits, settings),
        "optimizer": keras.saving.serialize_keras_object(optimizer),
        "wall_time": history[-1]["seconds"] if history else 0.0,
        "history": history,
    }
