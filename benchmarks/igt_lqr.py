"""Policy gradient on a linear-quadratic regulator (Arnold et al. 2019, Figure 5 left).

The paper's system is described in its Appendix A, which we do not have; this
one is our choice. Three states, two inputs, no process noise:

    x_{t+1} = A x_t + B u_t,   x_0 ~ N(0, I),   u_t = K x_t + σ ε_t,   ε_t ~ N(0, I)
    J_H(K) = E[Σ_{t=0}^{H−1} x_tᵀQx_t + u_tᵀRu_t],   Q = I, R = I, H = 20

with A and B below (A has eigenvalues 0.49, −0.23 and −0.95, so the open loop
K = 0 is stable but slow and costs about twice the optimum). The policy is a
2×3 gain K, starting at 0, with exploration σ = 0.05.

* SGD: `keras.optimizers.SGD(α)` on the REINFORCE estimate from N = 600
  trajectories (the paper's number): the mean over trajectories of
  Σₜ ∇_K log π(uₜ|xₜ)·(cost from t to H − 1), with ∇_K log π = εₜxₜᵀ/σ. No
  baseline; only the costs before t are left out, which does not change the
  expectation.
* ITA: `IGT(SGD(α), tail_fraction=c)` with c = 0.25 on the same estimates
  (the same draws of x₀ and ε for a given seed and step).
* GD: `SGD(α)` on the exact gradient of J_H, obtained by TF autodiff through
  the closed form of `expected_cost`. It is deterministic and runs once.

All use α = 1.5e-3 (float32: 1.50000001e-3), 3000 steps. At K = 0 the
Hessian of J_H has eigenvalues from −38 (the problem is not convex) to 1048,
so GD is stable there only for α < 1.9e-3; at the optimum they are 3.5 to 36.

The evaluation cost is J_H of the method's answer (ITA's true iterate), in
closed form, after every step, for seeds 0, 1, 2 (the seed picks the draws).
The optimum line is J_H(K_DARE): the infinite-horizon static gain from the
discrete algebraic Riccati equation (scipy.linalg.solve_discrete_are),
evaluated with the same finite-horizon formula, exploration noise included.
The finite-horizon cost's own best constant gain is slightly different; it is
computed too (L-BFGS) and reported.

    python benchmarks/igt_lqr.py [--steps 3000] [--seeds 0 1 2]
"""

import argparse
import dataclasses
import functools
import pathlib
import sys

import keras
import numpy as np
import scipy.linalg
import scipy.optimize
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parent))
import _loop  # noqa: E402
from keras_momenta.igt import IGT  # noqa: E402

A = np.array([[0.08, -0.08, 0.4], [0.06, -0.33, 0.22], [0.8, 0.58, -0.43]])
B = np.array([[-0.73, -0.36], [0.02, -1.34], [-0.13, -0.72]])
Q, R = np.eye(3), np.eye(2)
STATES, ACTIONS = B.shape
EXCESS_FLOOR = 1e-10


@dataclasses.dataclass(frozen=True)
class Settings:
    """The knobs of a run; the defaults are the documented benchmark."""

    horizon: int = 20
    trajectories: int = 600
    sigma: float = 0.05
    learning_rate: float = 1.5e-3
    tail_fraction: float = 0.25
    steps: int = 3000


METHODS = {
    "SGD": (lambda s: keras.optimizers.SGD(s.learning_rate), "reinforce"),
    "ITA": (
        lambda s: IGT(keras.optimizers.SGD(s.learning_rate), tail_fraction=s.tail_fraction),
        "reinforce",
    ),
    "GD": (lambda s: keras.optimizers.SGD(s.learning_rate), "exact"),
}


def _tensors():
    return (tf.constant(m, tf.float64) for m in (A, B, Q, R))


def _transpose(matrix):
    return tf.linalg.matrix_transpose(matrix)


def expected_cost(gain, settings=Settings()):
    """Exact E[Σₜ xₜᵀQxₜ + uₜᵀRuₜ] of the policies u = Kx + σε; K is (..., m, n).

    The state covariance Σ starts at I and moves as Σ ← MΣMᵀ + σ²BBᵀ with
    M = A + BK; the expected stage cost is tr((Q + KᵀRK)Σ) + σ²·tr(R).
    """
    a, b, q, r = _tensors()
    sigma = settings.sigma
    closed = a + b @ gain
    weight = q + _transpose(gain) @ r @ gain
    covariance = tf.eye(STATES, batch_shape=tf.shape(gain)[:-2], dtype=tf.float64)
    total = tf.zeros(tf.shape(gain)[:-2], tf.float64)
    for _ in range(settings.horizon):
        total += tf.linalg.trace(weight @ covariance)
        covariance = closed @ covariance @ _transpose(closed) + sigma**2 * (b @ _transpose(b))
    return total + settings.horizon * sigma**2 * float(np.trace(R))


def draws(seeds, step, settings=Settings()):
    """The standard normals of one estimate per seed: x₀ (seeds, N, n) and ε (seeds, N, H, m)."""
    n, horizon = settings.trajectories, settings.horizon
    z = _loop.normals(seeds, step, [n, STATES + horizon * ACTIONS])
    return z[..., :STATES], tf.reshape(z[..., STATES:], [len(seeds), n, horizon, ACTIONS])


def rollout(gain, start, noise, settings=Settings()):
    """Stage costs (..., N, H) and states (..., N, H, n) of gains K (..., m, n)."""
    a, b, q, r = _tensors()
    x, costs, states = start, [], []
    for t in range(settings.horizon):
        u = x @ _transpose(gain) + settings.sigma * noise[..., t, :]
        costs.append(tf.reduce_sum((x @ q) * x, -1) + tf.reduce_sum((u @ r) * u, -1))
        states.append(x)
        x = x @ _transpose(a) + u @ _transpose(b)
    return tf.stack(costs, -1), tf.stack(states, -2)


def reinforce(gain, start, noise, settings=Settings()):
    """REINFORCE: the trajectories' mean of Σₜ ∇_K log π(uₜ|xₜ)·(cost from t to the end).

    With ∇_K log π(uₜ|xₜ) = εₜxₜᵀ/σ the sum over trajectories and steps is one
    contraction of ε weighted by the cost to go with the states.
    """
    costs, states = rollout(gain, start, noise, settings)
    to_go = tf.cumsum(costs, axis=-1, reverse=True)
    weighted = noise * to_go[..., None]
    total = tf.einsum("...nti,...ntj->...ij", weighted, states)
    return total / (settings.sigma * settings.trajectories)


def exact_gradient(gain, settings=Settings()):
    gain = tf.convert_to_tensor(gain)
    with tf.GradientTape() as tape:
        tape.watch(gain)
        cost = tf.reduce_sum(expected_cost(gain, settings))
    return tape.gradient(cost, gain)


def riccati_gain():
    """The infinite-horizon optimal gain, from the discrete algebraic Riccati equation."""
    p = scipy.linalg.solve_discrete_are(A, B, Q, R)
    return -np.linalg.solve(R + B.T @ p @ B, B.T @ p @ A)


def best_static_gain(settings=Settings()):
    """The constant gain that minimises the finite-horizon `expected_cost` (L-BFGS)."""

    def cost_and_gradient(flat):
        gain = tf.constant(flat.reshape(ACTIONS, STATES))
        return (
            float(expected_cost(gain, settings)),
            exact_gradient(gain, settings).numpy().ravel(),
        )

    start = riccati_gain().ravel()
    # ftol=0: the default relative tolerance stops about 1e-11 above the
    # minimum, which GD then passes.
    result = scipy.optimize.minimize(
        cost_and_gradient, start, jac=True, method="L-BFGS-B", options={"gtol": 1e-13, "ftol": 0.0}
    )
    return result.x.reshape(ACTIONS, STATES)


def records(name, seeds, settings=Settings(), chunk=1000):
    """Exact expected cost of each seed's policy after steps 1..steps: (steps, seeds)."""
    make, estimator = METHODS[name]
    optimizer = make(settings)
    gain = keras.Variable(np.zeros((len(seeds), ACTIONS, STATES)), dtype="float64")
    optimizer.build([gain])

    def gradient(t):
        if estimator == "exact":
            return exact_gradient(gain.value, settings)
        return reinforce(gain.value, *draws(seeds, t, settings), settings)

    def step(t):
        optimizer.apply([gradient(t)], [gain])
        return expected_cost(_loop.reported_value(optimizer, gain), settings)

    return _loop.scan(step, np.arange(1, settings.steps + 1, dtype=np.int64), chunk)


def run(seeds=(0, 1, 2), settings=Settings(), names=None):
    """{method: records}; GD is deterministic and runs once."""
    return {
        name: records(name, (0,) if METHODS[name][1] == "exact" else seeds, settings)
        for name in names or METHODS
    }


@functools.cache
def optimal_costs(settings=Settings()):
    """(J_H(K_DARE), min over constant K of J_H(K)), both with the finite-horizon cost."""
    riccati = expected_cost(tf.constant(riccati_gain()), settings)
    best = expected_cost(tf.constant(best_static_gain(settings)), settings)
    return float(riccati), float(best)


def steps_to_stay_within(costs, target, tolerance=0.02):
    """Per seed, the first step from which the cost stays ≤ (1 + tolerance)·target,
    or None if it never does."""
    above = costs > (1 + tolerance) * target
    steps = []
    for column in above.T:
        last_above = np.nonzero(column)[0]
        if len(last_above) == 0:
            steps.append(1)
        else:
            steps.append(int(last_above[-1]) + 2 if last_above[-1] + 1 < len(column) else None)
    return steps


def table(result, settings=Settings()):
    riccati, best = optimal_costs(settings)
    steps = settings.steps
    tail = max(steps // 10, 1)
    lines = [
        f"| method | J after {steps:,} steps, mean ± std | J − J_H(K_DARE) | "
        f"mean J over the last {tail:,} steps | step from which J stays ≤ 1.02·J_H(K_DARE) | "
        f"mean abs(J_t − J_(t−1)) over the last half |",
        "|---|---|---|---|---|---|",
    ]
    for name, costs in result.items():
        final = costs[-1]
        reached = [f"{s:,}" if s else "never" for s in steps_to_stay_within(costs, riccati)]
        jitter = np.abs(np.diff(costs[steps // 2 :], axis=0)).mean()
        lines.append(
            f"| {name} ({costs.shape[1]} run{'s' if costs.shape[1] > 1 else ''}) | "
            f"{final.mean():.5g} ± {final.std():.2g} | {final.mean() - riccati:+.3g} | "
            f"{costs[-tail:].mean():.5g} | {', '.join(reached)} | {jitter:.2g} |"
        )
    lines.append(f"| Riccati gain K_DARE | {riccati:.5g} | 0 | | | |")
    best_row = f"best constant gain for H = {settings.horizon}"
    lines.append(f"| {best_row} | {best:.5g} | {best - riccati:+.2g} | | | |")
    return "\n".join(lines) + "\n"


def plot(result, path, settings=Settings()):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    riccati, best = optimal_costs(settings)
    t = np.arange(1, settings.steps + 1)
    fig, (left, right) = plt.subplots(1, 2, figsize=(12, 4.5))
    for name, costs in result.items():
        mean, std = costs.mean(axis=1), costs.std(axis=1)
        (line,) = left.plot(t, mean, label=name, lw=1)
        left.fill_between(t, mean - std, mean + std, color=line.get_color(), alpha=0.25)
        # Log scale: a band of the seeds' range, and GD's excess, which ends
        # at rounding level, floored for display.
        excess = np.maximum(costs - best, EXCESS_FLOOR)
        right.plot(t, np.exp(np.log(excess).mean(axis=1)), color=line.get_color(), lw=1)
        low, high = excess.min(axis=1), excess.max(axis=1)
        right.fill_between(t, low, high, color=line.get_color(), alpha=0.25)
    left.axhline(riccati, color="k", ls="--", lw=1, label="J_H(K_DARE), Riccati gain")
    left.set(ylabel="expected cost J_H(K)", title="LQR policy gradient, mean ± std over seeds")
    left.legend()
    right.axhline(riccati - best, color="k", ls="--", lw=1, label="J_H(K_DARE) − min_K J_H(K)")
    right.set_yscale("log")
    right.legend()
    right.set(
        ylabel=f"J_H(K) − min_K J_H(K)  (floored at {EXCESS_FLOOR:g})",
        title="excess cost: geometric mean and range over seeds",
    )
    for ax in (left, right):
        ax.grid(alpha=0.3, which="both")
        ax.set_xlabel("step")
    fig.tight_layout()
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main(argv=None):
    defaults = Settings()
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=defaults.steps)
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--trajectories", type=int, default=defaults.trajectories)
    parser.add_argument("--learning-rate", type=float, default=defaults.learning_rate)
    parser.add_argument("--tail-fraction", type=float, default=defaults.tail_fraction)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    settings = dataclasses.replace(
        defaults,
        steps=args.steps,
        trajectories=args.trajectories,
        learning_rate=args.learning_rate,
        tail_fraction=args.tail_fraction,
    )
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    result = run(args.seeds, settings)
    text = table(result, settings)
    (out / "igt_lqr.md").write_text(text)
    plot(result, out / "igt_lqr.png", settings)
    print(text)
    print(f"Plot and table in {out.resolve()}")


if __name__ == "__main__":
    main()
