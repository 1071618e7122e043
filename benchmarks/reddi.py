"""The Reddi problem (Expectigrad Figure 1): where EMA-normalised methods fail.

Reddi, Kale & Kumar (2018), Section 5, minimise a sequence of linear losses:

* online:     f_t(x) = 1010·x if t mod 101 = 1, otherwise −10·x;
* stochastic: f_t(x) = 1010·x with probability 0.01, otherwise −10·x.

Over a period the gradients sum to +10, so x should decrease. The domain is
not restricted (as in the Expectigrad paper; the plots clip x to [−1, 1] for
display only). Adam-type methods with a short EMA forget the rare large
gradient and drift to +∞; Expectigrad's arithmetic mean keeps it.

Every method uses the same hyperparameters: α = 0.1, β₁ = β = 0.9,
β₂ = ρ = 0.99, ε = 1e-8, x₀ = 0.

    python benchmarks/reddi.py [--steps 1000000] [--learning-rate 0.1] [--out benchmarks/results]
"""

import argparse
import pathlib
import sys

import keras
import numpy as np

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _loop  # noqa: E402
import keras_momenta as km  # noqa: E402
from keras_momenta.compare.baselines import Yogi  # noqa: E402

LEARNING_RATE, BETA_1, BETA_2, EPSILON = 0.1, 0.9, 0.99, 1e-8
PERIOD, BIG, SMALL, PROBABILITY = 101, 1010.0, -10.0, 0.01

OPTIMIZERS = {
    "Adam": lambda lr: keras.optimizers.Adam(lr, BETA_1, BETA_2, epsilon=EPSILON),
    "RMSprop": lambda lr: keras.optimizers.RMSprop(lr, rho=BETA_2, epsilon=EPSILON),
    "Adadelta": lambda lr: keras.optimizers.Adadelta(lr, rho=BETA_2, epsilon=EPSILON),
    "AMSGrad": lambda lr: keras.optimizers.Adam(lr, BETA_1, BETA_2, epsilon=EPSILON, amsgrad=True),
    "Yogi": lambda lr: Yogi(lr, BETA_1, BETA_2, epsilon=EPSILON),
    "Expectigrad": lambda lr: km.Expectigrad(lr, beta=BETA_1, epsilon=EPSILON),
}


def gradients(problem, steps, seed=0):
    t = np.arange(1, steps + 1)
    if problem == "online":
        big = t % PERIOD == 1
    elif problem == "stochastic":
        big = np.random.default_rng(seed).random(steps) < PROBABILITY
    else:
        raise ValueError(f"`problem` must be 'online' or 'stochastic'; got {problem!r}.")
    return np.where(big, BIG, SMALL)


def trajectory(optimizer, grads, chunk=5000):
    """x after every step, the whole run compiled with XLA in chunks."""
    x = keras.Variable(np.zeros(()), dtype="float64")
    optimizer.build([x])

    def step(gradient):
        optimizer.apply([gradient], [x])
        return x.value

    return _loop.scan(step, grads, chunk)


def steps_to_reach(xs, target=-1.0):
    """First step from which x stays at or below `target`; None if never."""
    above = np.nonzero(xs > target)[0]
    if len(above) == 0:
        return 1
    last_above = above[-1]
    return int(last_above + 2) if last_above + 1 < len(xs) else None


def run(steps, seeds=(0, 1, 2, 3, 4), names=None, learning_rate=LEARNING_RATE):
    """{(problem, name): [trajectory per seed]}; the online problem has one."""
    results = {}
    for name in names or OPTIMIZERS:
        make = OPTIMIZERS[name]
        results["online", name] = [trajectory(make(learning_rate), gradients("online", steps))]
        results["stochastic", name] = [
            trajectory(make(learning_rate), gradients("stochastic", steps, seed)) for seed in seeds
        ]
    return results


def table(results, steps):
    seeds = len(next(v for (p, _), v in results.items() if p == "stochastic"))
    lines = [
        f"| method | online: steps to x ≤ −1 | online: x after {steps:,} | "
        f"stochastic: seeds with x ≤ −1 from some step on | "
        f"stochastic: x after {steps:,}, mean ± std |",
        "|---|---|---|---|---|",
    ]
    for name in dict.fromkeys(name for _, name in results):
        (online,) = results["online", name]
        reached = steps_to_reach(online)
        finals = np.array([xs[-1] for xs in results["stochastic", name]])
        converged = sum(steps_to_reach(xs) is not None for xs in results["stochastic", name])
        lines.append(
            f"| {name} | {f'{reached:,}' if reached else 'never'} | {online[-1]:+.3g} | "
            f"{converged}/{seeds} | {finals.mean():+.3g} ± {finals.std():.2g} |"
        )
    return "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(11, 4), sharey=True)
    for ax, problem in zip(axes, ("online", "stochastic")):
        for (p, name), runs in results.items():
            if p == problem:  # the stochastic panel shows the first seed
                xs = runs[0]
                ax.plot(np.arange(1, len(xs) + 1), np.clip(xs, -1, 1), label=name)
        ax.set_title(f"Reddi problem ({problem}{', seed 0' if problem == 'stochastic' else ''})")
        ax.set_xscale("log")
        ax.set_xlabel("step")
        ax.grid(alpha=0.3)
    axes[0].set_ylabel("x (clipped to [−1, 1] for display)")
    axes[1].legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=1_000_000)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--learning-rate", type=float, default=LEARNING_RATE,
                        help="α of every method (default 0.1)")
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run(args.steps, args.seeds, learning_rate=args.learning_rate)
    text = table(results, args.steps)
    suffix = "" if args.learning_rate == LEARNING_RATE else f"_lr{args.learning_rate:g}"
    (out / f"reddi{suffix}.md").write_text(text)
    plot(results, out / f"reddi{suffix}.png")
    print(text)
    print(f"Plot and table in {out.resolve()}")


if __name__ == "__main__":
    main()
