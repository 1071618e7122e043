"""The release artefacts: `python -m build` makes an sdist and a wheel that
hold every module and data file of the package, and the wheel installs into a
clean virtual environment and trains from outside the source tree; the
package installs into a TF official-models environment (the oldest
TensorFlow setup.cfg admits), passes the float64 references there and trains
an official-models experiment."""

import pathlib
import re
import shutil
import subprocess
import sys
import tarfile
import zipfile

import pytest

import keras_momenta as km

ROOT = pathlib.Path(__file__).resolve().parents[1]
SOURCE_FILES = sorted(
    str(path.relative_to(ROOT))
    for pattern in ("*.py", "*.json")
    for path in (ROOT / "keras_momenta").rglob(pattern)
    if "__pycache__" not in path.parts
)

SMOKE_TEST = """
import importlib.resources, pathlib, sys
import keras, numpy as np
import keras_momenta as km
assert not pathlib.Path(km.__file__).is_relative_to(pathlib.Path(sys.argv[1])), km.__file__
assert km.__version__ == sys.argv[2]
# keras_momenta.compare needs the compare extra: read its data file without importing it.
assert importlib.resources.files("keras_momenta").joinpath("compare", "tuned_learning_rates.json").is_file()
x = np.random.default_rng(0).normal(size=(64, 4)).astype("float32")
y = x.sum(axis=1, keepdims=True)
for name in sorted(km.OPTIMIZERS):
    optimizer = km.IGT(keras.optimizers.SGD(0.01)) if name == "igt" else name
    model = keras.Sequential([keras.Input((4,)), keras.layers.Dense(1)])
    model.compile(optimizer=optimizer, loss="mse")
    history = model.fit(x, y, batch_size=16, epochs=2, verbose=0)
    assert np.isfinite(history.history["loss"]).all(), name
    assert int(model.optimizer.iterations) == 8, name
print("trained", len(km.OPTIMIZERS), "optimizers")
"""


@pytest.fixture(scope="module")
def distributions(tmp_path_factory):
    out = tmp_path_factory.mktemp("dist")
    # No build isolation: setuptools comes from the test environment (pinned),
    # so building needs no network.
    result = subprocess.run(
        [sys.executable, "-m", "build", "--no-isolation", "--outdir", str(out), str(ROOT)],
        capture_output=True,
        text=True,
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-3000:]
    (wheel,) = out.glob("*.whl")
    (sdist,) = out.glob("*.tar.gz")
    return wheel, sdist


def test_the_wheel_holds_every_module_data_file_and_the_license(distributions):
    wheel, _ = distributions
    assert wheel.name == f"keras_momenta-{km.__version__}-py3-none-any.whl"
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in SOURCE_FILES if f not in names] == []
    assert not [name for name in names if name.startswith("tests/")]
    assert any(name.endswith(".dist-info/licenses/LICENSE") for name in names)


def test_the_sdist_holds_the_sources_readme_license_and_constraints(distributions):
    _, sdist = distributions
    prefix = f"keras_momenta-{km.__version__}/"
    names = {name.removeprefix(prefix) for name in tarfile.open(sdist).getnames()}
    assert [f for f in SOURCE_FILES if f not in names] == []
    assert {"README.md", "LICENSE", "setup.cfg", "pyproject.toml", "constraints.txt", "constraints-official.txt"} <= names


def _clean_environment(directory, constraints, *requirements):
    """A new virtual environment holding `requirements` within `constraints`;
    returns its Python."""
    subprocess.run([sys.executable, "-m", "venv", str(directory)], check=True)
    python = directory / "bin" / "python"
    install = subprocess.run(
        [str(python), "-m", "pip", "install", "-q", "-c", str(constraints), *map(str, requirements)],
        capture_output=True,
        text=True,
    )
    assert install.returncode == 0, install.stdout[-3000:] + install.stderr[-3000:]
    return python


@pytest.mark.slow
def test_the_wheel_installs_into_a_clean_environment_and_trains(distributions, tmp_path):
    wheel, _ = distributions
    python = _clean_environment(tmp_path / "venv", ROOT / "constraints.txt", wheel)
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    run = subprocess.run(
        [str(python), "-c", SMOKE_TEST, str(ROOT), km.__version__],
        cwd=elsewhere,
        capture_output=True,
        text=True,
        timeout=900,
    )
    assert run.returncode == 0, run.stdout[-3000:] + run.stderr[-5000:]
    assert f"trained {len(km.OPTIMIZERS)} optimizers" in run.stdout


# tf-models-official 2.20's TensorFlow and tf_keras, the oldest setup.cfg admits.
OLDEST = {"tensorflow": "2.20.0", "tf_keras": "2.20.1"}


@pytest.mark.slow
@pytest.mark.timeout(2400)  # an install and two test runs: 8 to 15 minutes on 2 busy cores
def test_the_official_models_environment_installs_and_trains(distributions, tmp_path):
    """A TF official-models 2.20 environment, as a user makes it: the wheel
    with its `official` extra installs beside tf-models-official (so beside
    TensorFlow 2.20, the oldest setup.cfg admits), computes the float64
    references there, and trains official-models' `resnet_imagenet`
    experiment (`tests/official_models_checks.py`)."""
    wheel, _ = distributions
    python = _clean_environment(
        tmp_path / "venv", ROOT / "constraints-official.txt", f"{wheel}[official]", "tf-models-official", "pytest"
    )
    versions = subprocess.run(
        [str(python), "-c", "import tensorflow, tf_keras; print(tensorflow.__version__, tf_keras.__version__)"],
        capture_output=True, text=True, check=True,
    )
    assert versions.stdout.split() == list(OLDEST.values())
    checkout = _copy_of_tests(tmp_path / "checkout")
    # The source tree's tests against the installed package, from a copy of
    # tests/ so that `import keras_momenta` finds the wheel. The experiment
    # checks run in a process of their own: MirroredStrategy instances of
    # earlier tests in the same process make TensorFlow's collectives clash.
    for tests in (
        ["tests/test_conformance.py", "tests/test_official.py", "-k", "matches_reference_for_200_steps or official"],
        ["tests/official_models_checks.py"],
    ):
        run = subprocess.run(
            [str(python), "-m", "pytest", "-q", "-p", "no:cacheprovider", *tests],
            cwd=checkout,
            capture_output=True,
            text=True,
            timeout=1200,
        )
        assert run.returncode == 0, run.stdout[-5000:] + run.stderr[-3000:]
        assert re.search(r"\b\d{2,} passed", run.stdout) and "skipped" not in run.stdout, run.stdout[-2000:]


def test_the_official_models_constraints_hold_the_oldest_tensorflow_and_this_pytest():
    pinned = (ROOT / "constraints-official.txt").read_text()
    for name, version in {**OLDEST, "tf-models-official": "2.20.0"}.items():
        assert f"\n{name}=={version}\n" in pinned, name
    (pytest_pin,) = re.findall(r"(?m)^pytest==.*$", (ROOT / "constraints.txt").read_text())
    assert f"\n{pytest_pin}\n" in pinned


def _copy_of_tests(directory):
    shutil.copytree(ROOT / "tests", directory / "tests", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.cfg", directory)
    shutil.copy(ROOT / "README.md", directory)  # official_models_checks.py runs its official-models section
    return directory
