"""The documentation site (mkdocs.yml, docs/): it builds with warnings as
errors, its API reference has every public name, and every Python example in
it (and in README) runs."""

import html.parser
import os
import pathlib
import re
import subprocess
import sys
import textwrap

import pytest

import keras_momenta as km

ROOT = pathlib.Path(__file__).resolve().parents[1]
DOCS = ROOT / "docs"


def python_examples(markdown):
    """The ```python blocks of a page, dedented (blocks inside list items are
    indented), in page order."""
    pattern = re.compile(r"^( *)```python\n(.*?)^\1```$", re.S | re.M)
    return [textwrap.dedent(match.group(2)) for match in pattern.finditer(markdown)]


# README always: its first model must run.
PAGES_WITH_CODE = sorted(
    [path for path in DOCS.glob("*.md") if python_examples(path.read_text())] + [ROOT / "README.md"]
)


@pytest.fixture(scope="module")
def site(tmp_path_factory):
    out = tmp_path_factory.mktemp("site")
    result = subprocess.run(
        [sys.executable, "-m", "mkdocs", "build", "--strict", "--site-dir", str(out)],
        cwd=ROOT,
        capture_output=True,
        text=True,
        env={**os.environ, "NO_MKDOCS_2_WARNING": "1"},
    )
    assert result.returncode == 0, result.stdout[-3000:] + result.stderr[-5000:]
    return out


class _Ids(html.parser.HTMLParser):
    def __init__(self):
        super().__init__()
        self.ids = set()

    def handle_starttag(self, tag, attrs):
        self.ids.update(value for name, value in attrs if name == "id")


def _ids(page):
    parser = _Ids()
    parser.feed(page.read_text())
    return parser.ids


def test_the_site_builds_with_warnings_as_errors(site):
    for page in ("index.html", "api/index.html", "reproducing/index.html", "benchmarks/index.html"):
        assert (site / page).is_file(), page
    assert not (site / "hooks.py").exists()


def test_every_public_name_is_in_the_api_reference(site):
    ids = _ids(site / "api" / "index.html")
    missing = [name for name in km.__all__ if name != "__version__" and f"keras_momenta.{name}" not in ids]
    assert not missing, f"not in the API reference: {missing}"
    assert "__version__" in (DOCS / "api.md").read_text()


def test_the_experiments_table_and_every_results_page_are_on_the_site(site):
    from keras_momenta.compare import experiments

    page = (site / "reproducing" / "index.html").read_text()
    assert page.count("<tr>") == len(experiments.EXPERIMENTS) + 1
    tasks = sorted(path.name for path in (ROOT / "benchmarks/results/tasks").iterdir() if path.is_dir())
    for task in tasks:
        result = site / "results" / task / "index.html"
        assert result.is_file(), task
        for plot in (ROOT / "benchmarks/results/tasks" / task).glob("*.png"):
            assert (site / "results" / task / plot.name).is_file()
            assert plot.name in result.read_text()
    linked = {e.results for e in experiments.EXPERIMENTS if e.results}
    assert {f"benchmarks/results/tasks/{task}/" for task in tasks} >= linked - {"benchmarks/README.md"}


@pytest.mark.parametrize("page", PAGES_WITH_CODE, ids=lambda path: str(path.relative_to(ROOT)))
def test_every_python_example_runs(page, tmp_path):
    examples = python_examples(page.read_text())
    assert examples, f"{page} has no ```python block"
    script = "\n".join(examples)
    result = subprocess.run(
        [sys.executable, "-c", script], cwd=tmp_path, capture_output=True, text=True, timeout=600
    )
    assert result.returncode == 0, f"{page.name}:\n{script}\n{result.stderr[-4000:]}"


def test_python_examples_finds_indented_blocks_in_order():
    markdown = "a\n```python\nx = 1\n```\n- item\n\n  ```python\n  y = x\n  ```\n```text\nno\n```\n"
    assert python_examples(markdown) == ["x = 1\n", "y = x\n"]
