"""Amortized Nesterov on stochastic least squares: acceleration against variance.

A convex sanity study in the spirit of the AM-SGD paper's Appendix A.8
(Zhou et al. 2020), whose text we do not have: Theorems 1 and 2 say that
raising the amortization length m trades Nesterov's acceleration (the
O(L/K²) term) for variance control (the O(σ/√K) term). So on a problem
where the noise is small, m = 1 should end lowest; where it is large, a
larger m should end lower and vary less between seeds.

Problem: streaming linear regression in d = 50 dimensions. Features
a ~ N(0, diag(λ)) with λ log-spaced from 1 down to 0.1, labels
y = aᵀx* + σ·ε (x* fixed, ε standard normal), and a mini-batch of B fresh
examples per step. The objective is F(x) = ½E(aᵀx − y)², so
F(x) − F* = ½(x − x*)ᵀdiag(λ)(x − x*), computed exactly (F(x₀) − F* ≈ 10).
Three regimes share η = 0.01, β = 0.9 and x₀ = 0:

* low noise:   B = 64, σ = 0.01 (the error is mostly the deterministic part);
* high noise:  B = 4,  σ = 1;
* heavy noise: B = 1,  σ = 1 (single examples: the multiplicative noise of
  the features brings m = 1 near the edge of stability).

For each m in {1, 2, 5, 10, 20}, AM1-SGD and AM2-SGD (option II, the option
the theory covers; m = 1 is OM-SGD) run K = 1000 steps on 10 seeds. A seed
fixes the examples (the same for every m: common random numbers) and
AM2-SGD's index sequence. The table gives F − F* at the output point after
K steps, mean ± std over seeds; the plot shows the curves.

    python benchmarks/amortized_convex.py [--steps 1000] [--seeds 0 ... 9]
"""

import argparse
import functools
import pathlib
import sys

import keras
import numpy as np
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1]))
import keras_momenta as km  # noqa: E402

DIMENSION = 50
EIGENVALUES = np.logspace(0, -1, DIMENSION)
LEARNING_RATE, MOMENTUM = 0.01, 0.9
AMORTIZATIONS = (1, 2, 5, 10, 20)
# (batch size B, label noise σ)
REGIMES = {"low noise": (64, 0.01), "high noise": (4, 1.0), "heavy noise": (1, 1.0)}
METHODS = {"AM1-SGD": km.AM1SGD, "AM2-SGD": km.AM2SGD}


def optimum():
    return np.random.default_rng(2020).normal(size=DIMENSION)


def suboptimality(x):
    """F(x) − F* per row of `x`."""
    return 0.5 * np.sum(EIGENVALUES * (np.asarray(x) - optimum()) ** 2, axis=-1)


def minibatch_gradient(x, seed, step, batch, noise):
    """∇ of ½·mean (aᵀx − y)² over B examples drawn from (seed, step)."""
    key = tf.stack([tf.cast(seed, tf.int64), step])
    normal = functools.partial(tf.random.stateless_normal, dtype=tf.float64)
    features = normal([batch, DIMENSION], key) * np.sqrt(EIGENVALUES)
    label_noise = normal([batch], key + [0, 2**40])
    labels = tf.linalg.matvec(features, tf.constant(optimum())) + noise * label_noise
    residual = tf.linalg.matvec(features, x) - labels
    return tf.linalg.matvec(features, residual, transpose_a=True) / batch


def run(method, m, regime, seeds, steps, record_every=50):
    """F − F* at the output point every `record_every` steps: (seeds, records)."""
    batch, noise = REGIMES[regime]
    runs = []
    for seed in seeds:
        x = keras.Variable(np.zeros(DIMENSION), dtype="float64")
        kwargs = {"seed": seed} if METHODS[method] is km.AM2SGD else {}
        optimizer = METHODS[method](LEARNING_RATE, MOMENTUM, amortization=m, option="II", **kwargs)
        optimizer.build([x])
        runs.append((seed, x, optimizer))

    # Not XLA: on CPU it runs this loop of tiny steps about 100× slower (and
    # its stateless draws differ from TensorFlow's for the same key).
    @tf.function
    def advance(start):
        for k in tf.range(start, start + record_every):
            for seed, x, optimizer in runs:
                optimizer.apply([minibatch_gradient(x.value, seed, k, batch, noise)], [x])

    curves = []
    for start in range(0, steps, record_every):
        advance(tf.constant(start, tf.int64))
        answers = [optimizer.evaluation_weights([x])[0].numpy() for _, x, optimizer in runs]
        curves.append(suboptimality(np.array(answers)))
    return np.array(curves).T


def study(
    seeds=tuple(range(10)), steps=1000, amortizations=AMORTIZATIONS, record_every=50,
    regimes=tuple(REGIMES),
):
    return {
        (regime, method, m): run(method, m, regime, seeds, steps, record_every)
        for regime in regimes
        for method in METHODS
        for m in amortizations
    }


def table(results, steps):
    regimes = [r for r in REGIMES if any(key[0] == r for key in results)]
    lines = [
        f"| method | m | " + " | ".join(f"{r}: F − F* after {steps:,} steps" for r in regimes) + " |",
        "|---|---|" + "---|" * len(regimes),
    ]
    keys = sorted({(method, m) for _, method, m in results}, key=lambda k: (k[0], k[1]))
    for method, m in keys:
        cells = []
        for regime in regimes:
            final = results[regime, method, m][:, -1]
            cells.append(f"{final.mean():.3e} ± {final.std():.1e}")
        lines.append(f"| {method} | {m} | " + " | ".join(cells) + " |")
    return "\n".join(lines) + "\n"


def plot(results, path, record_every):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    regimes = [r for r in REGIMES if any(key[0] == r for key in results)]
    fig, axes = plt.subplots(
        len(regimes), len(METHODS), figsize=(10, 3.3 * len(regimes)), sharex=True, squeeze=False
    )
    for row, regime in enumerate(regimes):
        for col, method in enumerate(METHODS):
            ax = axes[row, col]
            for (r, name, m), curves in results.items():
                if (r, name) != (regime, method):
                    continue
                steps = record_every * np.arange(1, curves.shape[1] + 1)
                mean, std = curves.mean(axis=0), curves.std(axis=0)
                (line,) = ax.plot(steps, mean, label=f"m = {m}")
                ax.fill_between(steps, np.maximum(mean - std, 1e-12), mean + std,
                                color=line.get_color(), alpha=0.15)
            ax.set_yscale("log")
            ax.set_title(f"{method}, {regime}")
            ax.grid(alpha=0.3)
            if row == len(regimes) - 1:
                ax.set_xlabel("step")
            if col == 0:
                ax.set_ylabel("F − F* at the output point")
    axes[0, 0].legend()
    fig.suptitle("Stochastic least squares: mean ± std over seeds")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--seeds", type=int, nargs="+", default=list(range(10)))
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    results = study(tuple(args.seeds), args.steps)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(results, args.steps)
    (out / "amortized_convex.md").write_text(text)
    plot(results, out / "amortized_convex.png", record_every=50)
    print(text)
    print(f"Results are in {out.resolve()}")


if __name__ == "__main__":
    main()
