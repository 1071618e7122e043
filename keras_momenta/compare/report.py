"""Plots, the markdown summary and the combined CSV of a comparison run."""

import csv

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "loss": "training loss",
    "accuracy": "training accuracy",
    "val_loss": "validation loss",
    "val_accuracy": "validation accuracy",
    "test_loss": "test loss",
    "test_accuracy": "test accuracy",
}


def label(column):
    return LABELS.get(column, column.replace("_", " "))


def stacked(histories, column):
    """seeds × epochs array of `column` (NaN where a run lacks it)."""
    return np.array([[row.get(column, np.nan) for row in history] for history in histories], float)


def plot_curves(curves, column, path, task, log_scale=False):
    """One curve per optimizer entry: mean over seeds, shaded ± one std."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, histories in curves.items():
        values = stacked(histories, column)
        mean, std = values.mean(axis=0), values.std(axis=0)
        epochs = np.arange(1, values.shape[1] + 1)
        (line,) = ax.plot(epochs, mean, label=name)
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(label(column))
    ax.set_title(f"{task.name}: {label(column)} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def average_epoch_std(values):
    """Std over seeds (rows) at each epoch (columns), averaged over epochs."""
    return float(np.mean(np.std(values, axis=0)))


def summary_table(task, curves, learning_rates, sweeps, seeds, epochs):
    metric = task.metrics[0]
    columns = ["loss", metric, f"val_{metric}", "test_loss", f"test_{metric}"]
    # Metrics of the end of a run only (`Task.final_metrics`, e.g. BLEU).
    columns += sorted({
        key for histories in curves.values() for history in histories
        for key in history[-1] if key.startswith("test_") and key not in columns
    })
    lines = [
        f"# {task.name}: final metrics after {epochs} epochs",
        "",
        f"{task.description} ({task.stands_for}); seeds {', '.join(map(str, seeds))}; "
        "mean ± std over seeds, at each optimizer's answer. The last column is the std of "
        f"test {metric} over seeds averaged over all epochs (the robustness measure of the "
        "AM-SGD paper's Table 1).",
        "",
        "| optimizer | step size | " + " | ".join(label(c) for c in columns)
        + f" | test {metric}: avg. per-epoch std |",
        "|---|---:|" + "---|" * (len(columns) + 1),
    ]
    for name, histories in curves.items():
        cells = [f"{learning_rates[name]:g}"]
        for column in columns:
            final = stacked(histories, column)[:, -1]
            cells.append(f"{final.mean():.4g} ± {final.std():.2g}")
        cells.append(f"{average_epoch_std(stacked(histories, f'test_{metric}')):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    if sweeps:
        lines += [
            "",
            f"Step-size sweep (seed {seeds[0]}): final {label(task.selection)}; the chosen "
            "step size is in bold.",
            "",
            "| optimizer | step size: final value |",
            "|---|---|",
        ]
        for name, sweep in sweeps.items():
            cells = [
                (f"**{rate:g}: {value:.4f}**" if rate == learning_rates[name] else f"{rate:g}: {value:.4f}")
                for rate, value in sweep.items()
            ]
            lines.append(f"| {name} | " + ", ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def write_results_csv(path, records):
    """One row per run and epoch: the run's settings, then its metrics."""
    rows = []
    for record in records:
        run = record["run"]
        for row in record["history"]:
            rows.append({
                "task": record["task"], "entry": run["entry"], "role": run["role"],
                "learning_rate": run["learning_rate"], "seed": run["seed"],
                "batch_size": record["batch_size"], "epochs": record["epochs"], **row,
            })
    columns = list(dict.fromkeys(key for row in rows for key in row))
    with open(path, "w", newline="") as f:
        writer = csv.DictWriter(f, fieldnames=columns)
        writer.writeheader()
        writer.writerows(rows)
