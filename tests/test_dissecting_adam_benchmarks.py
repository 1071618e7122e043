"""The Dissecting Adam benchmarks compute what they claim, at small sizes."""

import pathlib
import sys

import numpy as np
import pytest
from scipy import special, stats

sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import minibatch_cost  # noqa: E402
import stochastic_qp as qp  # noqa: E402
import variance_factors  # noqa: E402


# ------------------------------------------------------ stochastic QPs (Fig. 2)


@pytest.mark.parametrize("spectrum", qp.SPECTRA)
@pytest.mark.parametrize("basis", qp.BASES)
def test_problems_have_the_papers_spectra_and_bases(spectrum, basis):
    q, _ = qp.make_problem(spectrum, basis, d=40)
    np.testing.assert_allclose(q, q.T)
    eigenvalues = np.sort(np.linalg.eigvalsh(q))
    if spectrum == "mild":
        assert 0.1 <= eigenvalues[0] and eigenvalues[-1] <= 1.1
    else:
        assert 0 <= eigenvalues[0] and eigenvalues[35] <= 1 and 30 <= eigenvalues[36] <= 60
    off_diagonal = np.abs(q - np.diag(np.diag(q))).max()
    assert (off_diagonal == 0) == (basis == "axis-aligned")


def test_random_rotation_is_a_rotation():
    r = qp.random_rotation(12, np.random.default_rng(0))
    np.testing.assert_allclose(r @ r.T, np.eye(12), atol=1e-12)
    assert np.linalg.det(r) == pytest.approx(1.0)


@pytest.mark.parametrize("h, k, r", [(0.3, -0.5, 0.6), (-1.2, -0.4, -0.8), (0.0, 0.7, 0.3), (2.0, 0.0, -0.5), (1.5, 2.0, 0.99)])
def test_orthant_probability_is_the_bivariate_normal_cdf(h, k, r):
    exact = stats.multivariate_normal(mean=[0, 0], cov=[[1, r], [r, 1]]).cdf([h, k])
    assert float(qp.orthant_probability(h, k, r)) == pytest.approx(exact, abs=1e-7)


def test_expectations_match_monte_carlo():
    rng = np.random.default_rng(1)
    q, optimum = qp.make_problem("ill", "rotated", d=6)
    noise = 0.5
    expectations = qp.Expectations(q, noise)
    gradient = q @ (rng.normal(size=6) - optimum)
    samples = gradient + noise * rng.normal(size=(200_000, 6)) @ q.T
    for z, (mean, quadratic) in (
        (samples, expectations.sgd(gradient)),
        (np.sign(samples), expectations.ssd(gradient)),
    ):
        np.testing.assert_allclose(z.mean(axis=0), mean, atol=0.01 * np.abs(z).max())
        empirical = np.mean(np.einsum("ni,ij,nj->n", z, q, z))
        assert empirical == pytest.approx(quadratic, rel=0.01)


def test_ssd_wins_only_where_the_paper_says():
    steps, seeds = 60, (0, 1)
    final = {}
    for case in (("mild", "rotated", 0.0), ("ill", "axis-aligned", 0.1), ("ill", "rotated", 0.1)):
        for method in ("SGD", "SSD"):
            runs = [qp.run(*case, method, steps, seed, d=30) for seed in seeds]
            assert all(r[-1] < r[0] for r in runs)
            final[case, method] = qp.geometric_mean([r[-1] for r in runs])
    outcome = {case: qp.winner(final[case, "SGD"], final[case, "SSD"]) for case, _ in final}
    assert outcome[("mild", "rotated", 0.0)] == "SGD"  # noise-free, well conditioned
    assert outcome[("ill", "axis-aligned", 0.1)] == "SSD"  # noisy, ill-conditioned, diagonal
    assert outcome[("ill", "rotated", 0.1)] == "≈"  # ... but rotated: no advantage


def test_qp_table_covers_all_twelve_problems():
    results = {
        (s, b, n, m): np.array([[2.0, 1.0]]) for s in qp.SPECTRA for b in qp.BASES
        for n in qp.NOISE_LEVELS for m in ("SGD", "SSD")
    }
    rows = [line for line in qp.table(results, 1, (0,)).splitlines() if line.startswith("| [") or line.startswith("| 90%")]
    assert len(rows) == 12 and all(row.endswith("| ≈ |") for row in rows)


# ------------------------------------------------- variance factors (Fig. 5)


def test_variance_factors():
    eta = np.array([0.0, 0.5, 1.0, 2.0, 100.0])
    np.testing.assert_allclose(variance_factors.svag_factor(eta)[:3], [1.0, 0.8, 0.5])
    np.testing.assert_allclose(variance_factors.adam_factor(1.0), 2**-0.5)
    np.testing.assert_allclose(variance_factors.sign_factor(eta), special.erf(1 / (np.sqrt(2) * np.maximum(eta, 1e-300))))
    for factor in variance_factors.FACTORS.values():
        values = factor(eta)
        assert values[0] == 1.0 and np.all(np.diff(values) < 0) and values[-1] < 0.02
    # Adam's factor approximates the optimal sign factor closely (Figure 5).
    grid = np.linspace(0, 10, 1001)
    assert np.max(np.abs(variance_factors.adam_factor(grid) - variance_factors.sign_factor(grid))) < 0.07
    assert variance_factors.monte_carlo_sign_agreement(1.0) == pytest.approx(special.erf(2**-0.5), abs=0.01)


def test_optimizers_apply_the_factors():
    for eta in (0.0, 0.5, 2.0):
        msvag, adamstar = variance_factors.optimizer_factors(eta)
        assert msvag == pytest.approx(variance_factors.svag_factor(eta), rel=1e-12)
        assert adamstar == pytest.approx(variance_factors.adam_factor(eta), rel=1e-12)


# --------------------------------------------------- mini-batch variance cost


def test_minibatch_cost_benchmark_runs():
    rows = minibatch_cost.run(["small_mlp"], steps=2, repeats=1, xla_modes=(False,), batch_size=16)
    (row,) = rows
    assert row["plain"] > 0 and row["minibatch"] > 0 and row["batch"] == 16
    assert row["parameters"] == 40 * 100 + 100 + 100 * 100 + 100 + 100 * 10 + 10
    lines = minibatch_cost.table(rows).splitlines()
    assert lines[2].startswith("| small_mlp | 15,210 | 16 | no |") and "×" in lines[2]


# ------------------------------------------------- the tables of benchmarks/README.md


def test_readme_qp_table_is_what_the_script_prints():
    """The header and the problem columns (spectrum, basis, ν) of every row."""
    from tests.harness import committed_tables, printed_tables

    results = {
        (s, b, n, m): np.array([[2.0, 1.0]]) for s in qp.SPECTRA for b in qp.BASES
        for n in qp.NOISE_LEVELS for m in ("SGD", "SSD")
    }
    (committed,) = committed_tables("Stochastic quadratic problems")
    (printed,) = printed_tables(qp.table(results, 1, (0,)))
    assert committed.structure(3) == printed.structure(3)


def test_readme_variance_factors_table_is_what_the_script_prints():
    """The full command is cheap and deterministic: every cell."""
    from tests.harness import committed_tables, printed_tables

    (committed,) = committed_tables("Variance adaptation factors")
    (printed,) = printed_tables(variance_factors.table())
    assert committed.header == printed.header and committed.rows == printed.rows


def test_readme_minibatch_cost_table_is_what_the_script_prints(tmp_path, monkeypatch, capsys):
    """The command's own models and XLA modes, with the timing replaced by
    fixed rows (the README's run takes 7 minutes)."""
    from tests.harness import committed_tables, printed_tables

    def run(models, steps, repeats, xla_modes=(False, True), batch_size=None):
        return [
            {"model": name, "parameters": 1000, "batch": minibatch_cost.MODELS[name][2],
             "xla": xla, "plain": 1.0, "minibatch": 2.0}
            for name in models for xla in xla_modes
        ]

    monkeypatch.setattr(minibatch_cost, "run", run)
    minibatch_cost.main(["--out", str(tmp_path)])
    (committed,) = committed_tables("Cost of the mini-batch variance estimate")
    (printed,) = printed_tables(capsys.readouterr().out)
    assert committed.structure() == printed.structure()
    assert committed.column(2) == printed.column(2) and committed.column(3) == printed.column(3)
