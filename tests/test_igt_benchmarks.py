"""The IGT benchmarks (benchmarks/igt_quadratic.py and igt_lqr.py) show what they claim."""

import dataclasses
import pathlib
import sys

import numpy as np
import pytest
import tensorflow as tf

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import _loop  # noqa: E402
import igt_lqr as lqr  # noqa: E402
import igt_quadratic as quadratic  # noqa: E402


def test_scan_runs_every_row_in_order_across_chunks():
    total = tf.Variable(0.0, dtype=tf.float64)

    def step(x):
        total.assign_add(x)
        return tf.stack([total.read_value(), x])

    rows = np.arange(1.0, 11.0)
    records = _loop.scan(step, rows, chunk=4)  # chunks of 4, 4 and 2
    np.testing.assert_array_equal(records, np.stack([np.cumsum(rows), rows], axis=1))


# ------------------------------------------------------------- the quadratic


def test_quadratic_has_the_stated_spectrum():
    hessian, optimum = quadratic.problem(3)
    eigenvalues = np.linalg.eigvalsh(hessian)
    np.testing.assert_allclose(eigenvalues, quadratic.eigenvalues(), rtol=1e-9)
    assert eigenvalues[-1] / eigenvalues[0] == pytest.approx(1000.0)
    assert eigenvalues[-1] == pytest.approx(1.0)
    other_hessian, other_optimum = quadratic.problem(4)
    assert not np.allclose(other_hessian, hessian) and not np.allclose(other_optimum, optimum)


def test_quadratic_noise_has_variance_0_3_and_is_reproducible():
    sample = tf.function(lambda t: quadratic.noise((0, 1), t))
    draws = np.stack([sample(tf.constant(t, tf.int64)).numpy() for t in range(1, 501)])
    assert draws.shape == (500, 2, quadratic.DIM)
    assert draws.var() == pytest.approx(0.3, rel=0.03)  # 10⁵ draws: ±0.5% (1σ)
    assert abs(draws.mean()) < 0.01
    again = quadratic.noise((0, 1), tf.constant(1, tf.int64)).numpy()
    np.testing.assert_array_equal(again, draws[0])
    assert abs(np.corrcoef(draws[:, 0].ravel(), draws[:, 1].ravel())[0, 1]) < 0.02


def test_log_log_slope():
    t = np.arange(1.0, 1001.0)
    assert quadratic.log_log_slope(5.0 / t, 500) == pytest.approx(-1.0)
    assert quadratic.log_log_slope(t**-0.5, 10, 100) == pytest.approx(-0.5)
    assert quadratic.log_log_slope(np.full(1000, 3.0), 500) == pytest.approx(0.0, abs=1e-12)


@pytest.fixture(scope="module")
def quadratic_run():
    """The benchmark's default settings: 10⁴ steps with α = 1.5/L, seeds 0-9."""
    return quadratic.run(10_000, names=["SGD", "IGT"])


def test_igt_is_ten_times_closer_than_sgd_after_ten_thousand_steps(quadratic_run):
    rows = quadratic.summary(quadratic_run)
    sgd, igt = rows["SGD"]["final"].mean(), rows["IGT"]["final"].mean()
    assert sgd >= 10 * igt
    # Both are where the analysis in the module docstring puts them: SGD's
    # stationary error, and the error of the mean of 10⁴ noisy gradients.
    eigenvalues, variance = quadratic.eigenvalues(), quadratic.NOISE_VARIANCE
    step = quadratic.LEARNING_RATE * eigenvalues
    plateau = variance * np.sum(quadratic.LEARNING_RATE / (eigenvalues * (2 - step)))
    assert sgd == pytest.approx(plateau, rel=0.25)
    assert igt == pytest.approx(variance * np.sum(eigenvalues**-2.0) / 10_000, rel=0.5)


def test_igt_converges_like_one_over_t_and_sgd_stalls(quadratic_run):
    rows = quadratic.summary(quadratic_run)
    assert -1.4 < rows["IGT"]["slope"] < -0.7
    assert abs(rows["SGD"]["slope"]) < 0.25


def test_igt_noise_shrinks_like_one_over_square_root_of_t(quadratic_run):
    steps = np.array([10, 100, 1000, 10_000])
    one_sample = np.sqrt(quadratic.DIM * quadratic.NOISE_VARIANCE)
    igt = quadratic_run["IGT"][steps - 1, :, quadratic.NOISE].mean(axis=1)
    sgd = quadratic_run["SGD"][steps - 1, :, quadratic.NOISE].mean(axis=1)
    # IGT's noise is the mean of the t noises so far (transport is exact here).
    np.testing.assert_allclose(igt, one_sample / np.sqrt(steps), rtol=0.2)
    np.testing.assert_allclose(sgd, one_sample, rtol=0.1)
    rows = quadratic.summary(quadratic_run)
    assert rows["IGT"]["noise_slope"] == pytest.approx(-0.5, abs=0.15)


def test_igt_estimate_is_better_aligned_on_the_way_in(quadratic_run):
    # At distances 100-1000 SGD's fresh noise dominates its gradient; IGT's
    # averaged estimate still points along the full gradient.
    bands = ((300, 1000), (100, 300))
    sgd = quadratic.median_by_distance(quadratic_run["SGD"], quadratic.COSINE, bands)
    igt = quadratic.median_by_distance(quadratic_run["IGT"], quadratic.COSINE, bands)
    assert igt[0] > 0.85 and sgd[0] < 0.65
    assert igt[1] > sgd[1] + 0.15


# ------------------------------------------------------------------- the LQR


@pytest.mark.parametrize("sigma", [0.05, 0.5])
def test_expected_cost_matches_monte_carlo(sigma):
    settings = dataclasses.replace(lqr.Settings(), sigma=sigma, trajectories=40_000)
    gains = (np.zeros((2, 3)), lqr.riccati_gain(), np.array([[0.3, -0.2, 0.1], [0.0, 0.4, -0.3]]))
    for step, gain in enumerate(gains):
        start, noise = lqr.draws((7,), step, settings)
        costs, _ = lqr.rollout(tf.constant(gain), start, noise, settings)
        totals = tf.reduce_sum(costs, axis=-1).numpy().ravel()
        exact = float(lqr.expected_cost(tf.constant(gain), settings))
        assert abs(totals.mean() - exact) < 4 * totals.std() / np.sqrt(len(totals))


def test_exact_gradient_matches_central_differences():
    gain = lqr.riccati_gain() + np.array([[0.1, 0.0, -0.2], [0.05, 0.1, 0.0]])
    gradient = lqr.exact_gradient(tf.constant(gain)).numpy()
    differences = np.zeros_like(gain)
    h = 1e-6
    for index in np.ndindex(gain.shape):
        bump = np.zeros_like(gain)
        bump[index] = h
        up, down = (float(lqr.expected_cost(tf.constant(gain + s * bump))) for s in (1, -1))
        differences[index] = (up - down) / (2 * h)
    np.testing.assert_allclose(gradient, differences, rtol=1e-6, atol=1e-6)
    assert np.abs(gradient).max() > 0.1


@pytest.mark.parametrize("sigma", [0.05, 0.5])
def test_reinforce_is_unbiased(sigma):
    """The mean of 300 estimates from 600 trajectories each matches the exact gradient."""
    settings = dataclasses.replace(lqr.Settings(), sigma=sigma)
    gain = tf.constant(np.array([[0.1, -0.1, 0.2], [0.0, -0.1, 0.1]]))
    estimate = tf.function(
        lambda step: lqr.reinforce(gain, *lqr.draws((5,), step, settings), settings)[0]
    )
    estimates = np.stack([estimate(tf.constant(s, tf.int64)).numpy() for s in range(300)])
    exact = lqr.exact_gradient(gain, settings).numpy()
    standard_error = estimates.std(axis=0) / np.sqrt(len(estimates))
    assert np.all(np.abs(estimates.mean(axis=0) - exact) < 4 * standard_error)
    # Precise enough that a wrong scale (say 1/σ² for 1/σ) could not pass.
    assert np.all(standard_error < 0.2 * np.abs(exact).max())


def test_riccati_gain_is_nearly_the_best_constant_gain_for_the_horizon():
    gain = lqr.riccati_gain()
    assert np.abs(np.linalg.eigvals(lqr.A + lqr.B @ gain)).max() < 1
    riccati, best = lqr.optimal_costs()
    assert 0 <= riccati - best < 1e-5 * riccati
    open_loop = float(lqr.expected_cost(tf.zeros((2, 3), tf.float64)))
    assert open_loop > 1.5 * riccati


@pytest.fixture(scope="module")
def lqr_run():
    """The default problem and methods, 1000 steps instead of 3000 and two seeds."""
    settings = dataclasses.replace(lqr.Settings(), steps=1000)
    return settings, lqr.run((0, 1), settings)


def _late_excess(settings, result):
    riccati, _ = lqr.optimal_costs(settings)
    return {name: costs[-100:].mean(axis=0) - riccati for name, costs in result.items()}


def test_ita_and_gd_end_below_sgd(lqr_run):
    excess = _late_excess(*lqr_run)
    assert np.all(excess["ITA"] < excess["SGD"])
    assert excess["ITA"].mean() < 0.5 * excess["SGD"].mean()
    assert excess["GD"].mean() < 0.01 * excess["SGD"].mean()


def test_gd_approaches_the_riccati_cost(lqr_run):
    settings, result = lqr_run
    riccati, _ = lqr.optimal_costs(settings)
    gd = result["GD"][:, 0]
    assert gd[9] > 1.01 * riccati  # it starts far away ...
    assert gd[-1] == pytest.approx(riccati, rel=1e-4)  # ... and gets there


def test_ita_curve_is_smoother_than_sgd(lqr_run):
    _, result = lqr_run
    jitter = {name: np.abs(np.diff(costs[500:], axis=0)).mean() for name, costs in result.items()}
    assert jitter["ITA"] < 0.1 * jitter["SGD"]


# ------------------------------------------------- the tables of benchmarks/README.md


def test_readme_quadratic_tables_are_what_the_script_prints(quadratic_run):
    """Both tables of the README's section have the header that
    `igt_quadratic.table` prints for this module's run (the README's
    settings), and its rows: every method, in order, where this run has SGD
    and IGT only (all four would cost 13 s more)."""
    from tests.harness import committed_tables, printed_tables

    committed = committed_tables("IGT on a noisy quadratic")
    printed = printed_tables(quadratic.table(quadratic_run))
    assert len(committed) == len(printed) == 2
    for mine, theirs in zip(committed, printed):
        assert mine.header == theirs.header
        assert mine.labels == tuple(quadratic.METHODS)
        assert theirs.labels == tuple(name for name in mine.labels if name in quadratic_run)


def test_readme_lqr_table_is_what_the_script_prints(lqr_run):
    """The README's table (3000 steps, 3 seeds) against this module's run's (1000, 2)."""
    from tests.harness import committed_tables, printed_tables

    settings, result = lqr_run
    (committed,) = committed_tables("LQR policy gradient")
    (printed,) = printed_tables(lqr.table(result, settings))
    sizes = ("3,000", "1,000"), ("last 300 steps", "last 100 steps"), ("(3 runs)", "(2 runs)")
    assert committed.replace(*sizes).structure() == printed.structure()
