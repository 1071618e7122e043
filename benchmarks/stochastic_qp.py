"""Stochastic quadratic problems (Dissecting Adam, Section 2.2 and Figure 2):
when is the sign of a stochastic gradient a better direction than the gradient?

ℓ(θ, x) = ½(θ − x)ᵀQ(θ − x) with x ~ N(x*, ν²I), so the stochastic gradient
g = Q(θ − x) is N(∇L, ν²QQ) with ∇L = Q(θ − x*). Q has d = 100 eigenvalues,
either uniform in [0.1, 1.1] ("mild") or 90% uniform in [0, 1] and 10% in
[30, 60] ("ill", the spectrum reported for neural networks), with an
axis-aligned (Q = Λ) or a uniformly drawn rotated eigenbasis (Q = RΛRᵀ).
Noise levels ν ∈ {0, 0.1, 4}.

SGD (z = g) and SSD (z = sign g, the update of `km.MSSD(momentum=0)`) each take
the step size that minimises the expected loss after the step, Eq. 10:
α* = ∇Lᵀ E[z] / E[zᵀQz], computed exactly at every step. For SGD,
E[gᵀQg] = ∇LᵀQ∇L + ν²·tr(Q³). For SSD, E[sign gᵢ] = erf(∇Lᵢ/(√2σᵢ)) and
E[sign gᵢ sign gⱼ] follows from the bivariate normal orthant probability
(Owen's T function), which makes E[sᵀQs] exact too. The step is then taken
with one sampled g. The excess loss L(θ) − L(x*) = ½(θ − x*)ᵀQ(θ − x*) is
recorded; the problem (spectrum, rotation, x*) is fixed, the seeds draw the
gradient noise; θ₀ = 0 and x* ~ N(0, I).

    python benchmarks/stochastic_qp.py [--steps 200] [--seeds 0 1 2 3 4] [--out benchmarks/results]
"""

import argparse
import pathlib

import numpy as np
from scipy import special

DIMENSION = 100
SPECTRA = ("mild", "ill")
BASES = ("rotated", "axis-aligned")
NOISE_LEVELS = (0.0, 0.1, 4.0)


def eigenvalues(spectrum, rng, d=DIMENSION):
    if spectrum == "mild":
        return rng.uniform(0.1, 1.1, d)
    if spectrum == "ill":
        large = d // 10
        return np.concatenate([rng.uniform(0.0, 1.0, d - large), rng.uniform(30.0, 60.0, large)])
    raise ValueError(f"`spectrum` must be one of {SPECTRA}; got {spectrum!r}.")


def random_rotation(d, rng):
    """A rotation drawn uniformly (Haar measure on SO(d))."""
    q, r = np.linalg.qr(rng.normal(size=(d, d)))
    q = q * np.sign(np.diag(r))
    if np.linalg.det(q) < 0:
        q[:, 0] = -q[:, 0]
    return q


def make_problem(spectrum, basis, seed=0, d=DIMENSION):
    rng = np.random.default_rng(seed)
    lam = eigenvalues(spectrum, rng, d)
    if basis == "axis-aligned":
        q = np.diag(lam)
    elif basis == "rotated":
        rotation = random_rotation(d, rng)
        q = rotation @ np.diag(lam) @ rotation.T
        q = (q + q.T) / 2
    else:
        raise ValueError(f"`basis` must be one of {BASES}; got {basis!r}.")
    return q, rng.normal(size=d)


class Expectations:
    """Exact E[z] and E[zᵀQz] for z = g and z = sign(g) on one problem."""

    def __init__(self, q, noise):
        self.q, self.noise = q, noise
        self.trace_q3 = np.trace(q @ q @ q)
        covariance = noise**2 * (q @ q)
        self.sigma = np.sqrt(np.diag(covariance))
        if noise > 0:
            correlation = covariance / np.outer(self.sigma, self.sigma)
            self.correlation = np.clip(correlation, -1.0, 1.0)

    def sgd(self, gradient):
        return gradient, gradient @ self.q @ gradient + self.noise**2 * self.trace_q3

    def ssd(self, gradient):
        if self.noise == 0:
            s = np.sign(gradient)
            return s, s @ self.q @ s
        # P(gᵢ < 0) = Φ(hᵢ), E[sign gᵢ] = 1 − 2Φ(hᵢ) = erf(∇Lᵢ/(√2σᵢ)).
        h = -gradient / self.sigma
        mean = special.erf(gradient / (np.sqrt(2) * self.sigma))
        both_negative = orthant_probability(h[:, None], h[None, :], self.correlation)
        phi = special.ndtr(h)
        # E[sᵢsⱼ] = 1 − 2P(gᵢ<0) − 2P(gⱼ<0) + 4P(gᵢ<0, gⱼ<0); E[sᵢ²] = 1.
        second = 1 - 2 * phi[:, None] - 2 * phi[None, :] + 4 * both_negative
        np.fill_diagonal(second, 1.0)
        return mean, np.sum(self.q * second)


def orthant_probability(h, k, r):
    """P(X < h, Y < k) for standard normals with correlation r (Owen, 1956)."""
    h, k, r = np.broadcast_arrays(h, k, r)
    root = np.sqrt(np.maximum(1 - r**2, 1e-300))
    with np.errstate(divide="ignore", invalid="ignore"):
        a_h = (k - r * h) / (h * root)
        a_k = (h - r * k) / (k * root)
        # Owen's T at h = 0 is arctan(a)/(2π); the limit a = ±∞ gives ±1/4.
        t_h = np.where(h == 0, np.sign(k - r * h) / 4, special.owens_t(h, a_h))
        t_k = np.where(k == 0, np.sign(h - r * k) / 4, special.owens_t(k, a_k))
    beta = np.where((h * k > 0) | ((h * k == 0) & (h + k >= 0)), 0.0, 0.5)
    return 0.5 * special.ndtr(h) + 0.5 * special.ndtr(k) - t_h - t_k - beta


def run(spectrum, basis, noise, method, steps, seed, problem_seed=0, d=DIMENSION):
    """Excess loss after each of `steps` steps (index 0: the start)."""
    q, optimum = make_problem(spectrum, basis, problem_seed, d)
    expectations = Expectations(q, noise)
    direction = {"SGD": lambda g: g, "SSD": np.sign}[method]
    expected = {"SGD": expectations.sgd, "SSD": expectations.ssd}[method]
    rng = np.random.default_rng(seed)
    theta = np.zeros(d)
    losses = [0.5 * (theta - optimum) @ q @ (theta - optimum)]
    for _ in range(steps):
        gradient = q @ (theta - optimum)
        mean, quadratic = expected(gradient)
        step_size = gradient @ mean / quadratic if quadratic > 0 else 0.0
        sample = gradient + noise * q @ rng.normal(size=d)  # Q(θ − x), x = x* + ν·ξ
        theta = theta - step_size * direction(sample)
        losses.append(0.5 * (theta - optimum) @ q @ (theta - optimum))
    return np.array(losses)


def run_all(steps, seeds, d=DIMENSION):
    return {
        (spectrum, basis, noise, method): np.array(
            [run(spectrum, basis, noise, method, steps, seed, d=d) for seed in seeds]
        )
        for spectrum in SPECTRA
        for basis in BASES
        for noise in NOISE_LEVELS
        for method in ("SGD", "SSD")
    }


ROUND_OFF = 1e-28  # ‖θ − x*‖ at the precision of float64: the loss cannot go lower


def geometric_mean(values):
    return float(np.exp(np.mean(np.log(np.maximum(values, 1e-300)))))


def winner(sgd, ssd, margin=2.0):
    """"SSD" or "SGD" if its final excess loss is `margin` times lower, else "≈"."""
    sgd, ssd = max(sgd, ROUND_OFF), max(ssd, ROUND_OFF)
    if ssd * margin <= sgd:
        return "SSD"
    if sgd * margin <= ssd:
        return "SGD"
    return "≈"


def _loss(value):
    return f"< {ROUND_OFF:.0e} (round-off)" if value < ROUND_OFF else f"{value:.3g}"


def table(results, steps, seeds):
    lines = [
        "| eigenvalues | eigenbasis | ν | at start | SGD | SSD | SSD / SGD | better |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for spectrum in SPECTRA:
        for basis in BASES:
            for noise in NOISE_LEVELS:
                runs = {m: results[spectrum, basis, noise, m] for m in ("SGD", "SSD")}
                start = runs["SGD"][0, 0]
                sgd, ssd = (geometric_mean(runs[m][:, -1]) for m in ("SGD", "SSD"))
                ratio = f"{ssd / sgd:.3g}" if min(sgd, ssd) >= ROUND_OFF else "—"
                label = "[0.1, 1.1]" if spectrum == "mild" else "90% [0, 1], 10% [30, 60]"
                lines.append(
                    f"| {label} | {basis} | {noise:g} | {start:.3g} | {_loss(sgd)} | "
                    f"{_loss(ssd)} | {ratio} | {winner(sgd, ssd)} |"
                )
    header = (
        f"Excess loss L(θ) − L(x*) after {steps} steps, geometric mean over seeds "
        f"{', '.join(map(str, seeds))} (d = {DIMENSION}). \"better\": the method whose "
        "excess loss is at least 2× lower; ≈ otherwise."
    )
    return header + "\n\n" + "\n".join(lines) + "\n"


def plot(results, path):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    rows = [(spectrum, basis) for spectrum in SPECTRA for basis in BASES]
    fig, axes = plt.subplots(len(rows), len(NOISE_LEVELS), figsize=(12, 11), sharex=True)
    for i, (spectrum, basis) in enumerate(rows):
        for j, noise in enumerate(NOISE_LEVELS):
            ax = axes[i, j]
            for method in ("SGD", "SSD"):
                runs = results[spectrum, basis, noise, method]
                median = np.median(runs, axis=0)
                (line,) = ax.plot(median, label=method)
                ax.fill_between(
                    np.arange(runs.shape[1]), runs.min(axis=0), runs.max(axis=0),
                    color=line.get_color(), alpha=0.2,
                )
            ax.set_yscale("log")
            ax.grid(alpha=0.3)
            if i == 0:
                ax.set_title(f"ν = {noise:g}")
            if j == 0:
                ax.set_ylabel(f"{spectrum}, {basis}\nL(θ) − L(x*)")
            if i == len(rows) - 1:
                ax.set_xlabel("step")
    axes[0, 0].legend()
    fig.suptitle("SGD vs SSD with optimal step sizes on 100-d stochastic QPs (median, min–max over seeds)")
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=200)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2, 3, 4])
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    results = run_all(args.steps, args.seeds)
    text = table(results, args.steps, args.seeds)
    (out / "stochastic_qp.md").write_text(text)
    plot(results, out / "stochastic_qp.png")
    print(text)
    print(f"Plot and table in {out.resolve()}")
    return results


if __name__ == "__main__":
    main()
