"""Expectigrad's momentum ablation (Expectigrad Figure 2, left).

The paper trains its MNIST MLP (784-1000-1000-10) for exactly one epoch with
three forms of momentum in Expectigrad (`km.Expectigrad(momentum=...)`):
classic inner momentum without bias correction, bias-corrected inner momentum
and its bias-corrected outer momentum, over β in [0, 1), and plots the
training loss after that epoch. Its findings: bias correction is crucial (the
uncorrected form is worst), and outer is at least as good as bias-corrected
inner at every β, with the gap widening as β → 1.

    python benchmarks/expectigrad_momentum.py                 # reduced: MNIST-1D MLP
    python benchmarks/expectigrad_momentum.py --task mnist_mlp --data-dir DIR   # the paper's

The batches of each seed are the comparison runner's (shuffled from the
seed), the model is the task's, α = 1e-3 and ε = 1e-8 (the paper's), and the
loss is measured on the whole training set after the epoch.
"""

import argparse
import pathlib
import sys

import keras
import numpy as np

import keras_momenta as km
from keras_momenta.compare import TASKS, data
from keras_momenta.compare.runner import evaluation_batches, training_batches

FORMS = ("inner", "inner_bias_corrected", "outer")
BETAS = (0.0, 0.5, 0.8, 0.9, 0.95, 0.99, 0.995, 0.999)


def loss_after_one_epoch(task, splits, form, beta, seed, batch_size, learning_rate):
    keras.utils.set_random_seed(seed)
    model = task.build_model()
    model.compile(
        optimizer=km.Expectigrad(learning_rate, beta=beta, momentum=form),
        loss=task.loss,
        jit_compile=True,
    )
    model.fit(training_batches(task, splits, seed, 0, batch_size), epochs=1, verbose=0)
    return float(model.evaluate(evaluation_batches(task, splits.train), verbose=0))


def run(task_name="mnist1d_mlp", betas=BETAS, seeds=(0, 1, 2), batch_size=None,
        learning_rate=1e-3, data_dir=None):
    """{(form, β): [loss after one epoch per seed]}."""
    task = TASKS[task_name]
    with data.downloads(True):
        splits = task.load(data_dir)
    batch_size = batch_size or task.batch_size
    return {
        (form, beta): [
            loss_after_one_epoch(task, splits, form, beta, seed, batch_size, learning_rate)
            for seed in seeds
        ]
        for form in FORMS
        for beta in betas
    }


def table(results, betas):
    lines = [
        "| β | " + " | ".join(FORMS) + " |",
        "|---:|" + "---:|" * len(FORMS),
    ]
    for beta in betas:
        cells = [
            f"{np.mean(results[form, beta]):.4f} ± {np.std(results[form, beta]):.4f}"
            for form in FORMS
        ]
        lines.append(f"| {beta:g} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, betas, path, title):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    x = np.arange(len(betas))
    for form in FORMS:
        values = np.array([results[form, beta] for beta in betas])
        mean, std = values.mean(axis=1), values.std(axis=1)
        (line,) = ax.plot(x, mean, marker="o", label=form)
        ax.fill_between(x, mean - std, mean + std, color=line.get_color(), alpha=0.2)
    ax.set_xticks(x, [f"{b:g}" for b in betas])
    ax.set_xlabel("β")
    ax.set_ylabel("training loss after one epoch")
    ax.set_yscale("log")
    ax.set_title(title)
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--task", default="mnist1d_mlp", choices=("mnist1d_mlp", "mnist_mlp"))
    parser.add_argument("--betas", nargs="+", type=float, default=list(BETAS))
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--batch-size", type=int, help="default: the task's")
    parser.add_argument("--data-dir")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    results = run(args.task, tuple(args.betas), tuple(args.seeds), args.batch_size,
                  data_dir=args.data_dir)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(results, args.betas)
    (out / f"expectigrad_momentum_{args.task}.md").write_text(text)
    plot(results, args.betas, out / f"expectigrad_momentum_{args.task}.png",
         f"{args.task}: Expectigrad's momentum forms, one epoch")
    print(text)
    return results


if __name__ == "__main__":
    sys.exit(main() and None)
