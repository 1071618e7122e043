"""Variance adaptation factors (Dissecting Adam, Figure 5 and Section 3).

For a stochastic direction p̂ with mean p and relative standard deviation
η = σ/|p|, the factor γ that minimises the expected squared distance to the
true direction is (Lemma 1):

    (1 + η²)⁻¹           for p̂ itself (SVAG, Eq. 16; used by km.MSVAG);
    erf(1/(√2·η))        for sign(p̂), if p̂ is Gaussian (Eq. 15);
    (1 + η²)^(−1/2)      Adam's implicit factor (Eq. 6; used by km.AdamStar),
                         a close approximation of the erf factor.

The script tabulates and plots the three, checks the erf factor (the expected
agreement of sign(p̂) with sign(p), 2ρ − 1) against a Monte Carlo estimate, and
checks that `km.MSVAG` and `km.AdamStar` apply exactly these factors when
handed the exact variance through the mini-batch interface.

    python benchmarks/variance_factors.py [--out benchmarks/results]
"""

import argparse
import pathlib

import numpy as np
from scipy import special

TABLE_ETAS = (0.0, 0.25, 0.5, 1.0, 1.5, 2.0, 3.0, 5.0)


def svag_factor(eta):
    return 1 / (1 + np.square(eta))


def sign_factor(eta):
    """erf(1/(√2η)), with its limit 1 at η = 0."""
    with np.errstate(divide="ignore"):
        return special.erf(1 / (np.sqrt(2) * np.asarray(eta, np.float64)))


def adam_factor(eta):
    return 1 / np.sqrt(1 + np.square(eta))


FACTORS = {
    "(1+η²)⁻¹ (SVAG)": svag_factor,
    "erf(1/(√2η)) (optimal for the sign)": sign_factor,
    "(1+η²)^(−1/2) (Adam, ADAM*)": adam_factor,
}


def monte_carlo_sign_agreement(eta, samples=200_000, seed=0):
    """E[sign(p̂)·sign(p)] for p̂ ~ N(1, η²): the optimal sign factor 2ρ − 1."""
    rng = np.random.default_rng(seed)
    return float(np.mean(np.sign(1 + eta * rng.normal(size=samples))))


def optimizer_factors(eta, batch_size=8):
    """γ applied by km.MSVAG and km.AdamStar (momentum 0, mini-batch variance)
    to a gradient g = 1 whose mini-batch variance is exactly η²."""
    import keras
    import tensorflow as tf

    import keras_momenta as km

    # (1/B)·Σ∇ℓₖ² − g² = (B − 1)·η²: an unbiased variance estimate of η².
    square_sum = batch_size * (1 + (batch_size - 1) * eta**2)
    factors = []
    for cls in (km.MSVAG, km.AdamStar):
        variable = keras.Variable(np.zeros(1))
        optimizer = cls(learning_rate=1.0, momentum=0.0, variance="minibatch")
        optimizer.add_minibatch_statistics([tf.constant([square_sum])], batch_size, [variable])
        optimizer.apply([tf.constant([1.0], tf.float64)], [variable])
        factors.append(-float(variable.numpy()[0]))
    return factors


def table(etas=TABLE_ETAS):
    lines = [
        "| η | (1+η²)⁻¹ | erf(1/(√2η)) | Monte Carlo 2ρ − 1 | (1+η²)^(−1/2) | "
        "(1+η²)^(−1/2) − erf | km.MSVAG γ | km.AdamStar γ |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for eta in etas:
        svag, sign, adam = svag_factor(eta), sign_factor(eta), adam_factor(eta)
        msvag, adamstar = optimizer_factors(eta)
        lines.append(
            f"| {eta:g} | {svag:.4f} | {sign:.4f} | {monte_carlo_sign_agreement(eta):.4f} | "
            f"{adam:.4f} | {adam - sign:+.4f} | {msvag:.4f} | {adamstar:.4f} |"
        )
    grid = np.linspace(0, 10, 10_001)
    gap = adam_factor(grid) - sign_factor(grid)
    worst = int(np.argmax(np.abs(gap)))
    note = (
        f"\nLargest gap between Adam's factor and the optimal sign factor on "
        f"η ∈ [0, 10]: {gap[worst]:+.4f} at η = {grid[worst]:.2f}.\n"
    )
    return "\n".join(lines) + "\n" + note


def plot(path, eta_max=5.0):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    eta = np.linspace(0, eta_max, 501)
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for label, factor in FACTORS.items():
        ax.plot(eta, factor(eta), label=label)
    ax.set_xlabel("relative standard deviation η = σ/|p|")
    ax.set_ylabel("variance adaptation factor γ")
    ax.set_title("Variance adaptation factors (Dissecting Adam, Figure 5)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table()
    (out / "variance_factors.md").write_text(text)
    plot(out / "variance_factors.png")
    print(text)
    print(f"Plot and table in {out.resolve()}")
    return text


if __name__ == "__main__":
    main()
