"""Plots and the markdown summary of a comparison run."""

import matplotlib

matplotlib.use("Agg")  # files only; no display needed
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

LABELS = {
    "train_loss": "training loss",
    "test_accuracy": "test accuracy",
    "train_accuracy": "training accuracy",
    "test_loss": "test loss",
}


def plot_curves(curves, column, path, task, log_scale=False):
    """One curve per optimizer: mean over seeds, shaded ± one std."""
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for name, metrics in curves.items():
        values = metrics[column]  # seeds x epochs
        mean, std = values.mean(axis=0), values.std(axis=0)
        epochs = np.arange(1, values.shape[1] + 1)
        (line,) = ax.plot(epochs, mean, label=name)
        ax.fill_between(epochs, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    if log_scale:
        ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel(LABELS[column])
    ax.set_title(f"{task.name}: {LABELS[column]} (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def average_epoch_std(values):
    """Std over seeds (rows) at each epoch (columns), averaged over epochs."""
    return float(np.mean(np.std(values, axis=0)))


def summary_table(curves, task, seeds, epochs):
    lines = [
        f"# {task.name}: final metrics after {epochs} epochs",
        "",
        f"{task.description}; seeds {', '.join(map(str, seeds))}; mean ± std over seeds. "
        "The last column is the std of test accuracy over seeds averaged over all "
        "epochs (the robustness measure of the AM-SGD paper's Table 1).",
        "",
        "| optimizer | training loss | training accuracy | test loss | test accuracy "
        "| test accuracy: avg. per-epoch std |",
        "|---|---|---|---|---|---|",
    ]
    for name, metrics in curves.items():
        cells = []
        for column in ("train_loss", "train_accuracy", "test_loss", "test_accuracy"):
            final = metrics[column][:, -1]
            cells.append(f"{final.mean():.4f} ± {final.std():.4f}")
        cells.append(f"{average_epoch_std(metrics['test_accuracy']):.4f}")
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"
