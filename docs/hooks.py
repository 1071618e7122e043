"""Build-time pages of the documentation site, made from what the repository
already holds so that nothing generated is committed:

- `benchmarks.md`: benchmarks/README.md (commands, tables, analysis);
- `results/`: the reduced runs' summaries and plots (benchmarks/results/tasks/);
- the experiments table in reproducing.md, from keras_momenta/compare/experiments.py.
"""

import importlib.util
import pathlib
import re

from mkdocs.structure.files import File, InclusionLevel

ROOT = pathlib.Path(__file__).resolve().parents[1]
TASK_RESULTS = ROOT / "benchmarks" / "results" / "tasks"
EXPERIMENTS_MARKER = "<!-- experiments-table -->"


def _experiments_module():
    # By path, so the table is this checkout's even where another copy of the
    # package is installed (it imports that copy's task lists, and so Keras).
    path = ROOT / "keras_momenta" / "compare" / "experiments.py"
    spec = importlib.util.spec_from_file_location("_experiments", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def site_link(repository_path):
    """Where a repository path the experiments table links to is on the site."""
    if repository_path == "benchmarks/README.md":
        return "benchmarks.md"
    match = re.fullmatch(r"benchmarks/results/tasks/([^/]+)/?", repository_path)
    if match:
        return f"results/{match.group(1)}.md"
    raise ValueError(f"no page of the site shows {repository_path!r}")


def _result_page(task_dir):
    lines = []
    for summary in sorted(task_dir.glob("*.md")):
        lines.append(summary.read_text())
    for plot in sorted(task_dir.glob("*.png")):
        lines.append(f"![{plot.stem.replace('_', ' ')}]({task_dir.name}/{plot.name})\n")
    lines.append(
        f"Committed in `benchmarks/results/tasks/{task_dir.name}/`; the command that "
        "made it is in the [experiments table](../reproducing.md).\n"
    )
    return "\n".join(lines)


def on_files(files, config):
    benchmarks = (ROOT / "benchmarks" / "README.md").read_text()
    files.append(File.generated(config, "benchmarks.md", content=benchmarks))
    task_dirs = sorted(path for path in TASK_RESULTS.iterdir() if path.is_dir())
    index = [
        "# Results of the reduced runs\n",
        "Each page holds a reduced run's summary table and plots, as committed in "
        "`benchmarks/results/tasks/`. What each stands for, its command and its "
        "verdict are in the [experiments table](../reproducing.md).\n",
    ]
    for task_dir in task_dirs:
        index.append(f"- [{task_dir.name}]({task_dir.name}.md)")
        files.append(
            File.generated(
                config,
                f"results/{task_dir.name}.md",
                content=_result_page(task_dir),
                inclusion=InclusionLevel.NOT_IN_NAV,  # reached from results/index.md
            )
        )
        for plot in sorted(task_dir.glob("*.png")):
            files.append(
                File.generated(config, f"results/{task_dir.name}/{plot.name}", abs_src_path=str(plot))
            )
    files.append(File.generated(config, "results/index.md", content="\n".join(index) + "\n"))
    return files


def on_page_markdown(markdown, page, config, files):
    if EXPERIMENTS_MARKER in markdown:
        table = _experiments_module().table(link=site_link)
        markdown = markdown.replace(EXPERIMENTS_MARKER, table)
    return markdown
