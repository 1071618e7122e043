"""Command line of the comparison runner: `python -m keras_momenta.compare`."""

import argparse
import sys

from keras_momenta.compare import experiments
from keras_momenta.compare.data import MissingDataError
from keras_momenta.compare.optimizers import OPTIMIZERS
from keras_momenta.compare.runner import run_comparison
from keras_momenta.compare.tasks import TASKS


def task_listing():
    lines = []
    for paper in sorted({task.paper for task in TASKS.values()}):
        lines.append(f"{paper}:")
        for task in TASKS.values():
            if task.paper == paper:
                lines.append(
                    f"  {task.name:<24} [{task.scale}] {task.stands_for}\n"
                    f"  {'':<24} {task.description}\n"
                    f"  {'':<24} data: {task.data}; optimizers: {', '.join(task.optimizers)}"
                )
    return "\n".join(lines)


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_momenta.compare",
        description="Train a reference task with several optimizers over several seeds; "
        "rerunning a command continues it from its checkpoints.",
    )
    parser.add_argument("--task", default="mnist1d_mlp", choices=sorted(TASKS), metavar="TASK")
    parser.add_argument("--list", action="store_true", help="list the tasks and the data each needs")
    parser.add_argument(
        "--experiments", nargs="?", const="full", choices=("full", "short"),
        help="print the table of the papers' experiments: commands, data, findings, verdicts "
        "('short': without the findings, as README has it)",
    )
    parser.add_argument(
        "--optimizers", nargs="+", choices=sorted(OPTIMIZERS), metavar="ENTRY",
        help="optimizer entries (default: the task's own list)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="default: the task's own; schedules follow it")
    parser.add_argument("--batch-size", type=int, help="default: the task's own")
    parser.add_argument(
        "--learning-rate", nargs="+", metavar="[ENTRY=]RATE",
        help="step size for every entry, or ENTRY=RATE pairs (default: the committed sweep's, "
        "else the entry's default)",
    )
    parser.add_argument(
        "--tune", action="store_true",
        help="sweep each entry's step-size grid on the first seed, choose on validation data, "
        "then run every seed",
    )
    parser.add_argument("--grid", nargs="+", type=float, help="the sweep's step sizes (with --tune)")
    parser.add_argument("--data-dir", help="where data sets are (TFDS data directory, local files)")
    parser.add_argument(
        "--no-download", action="store_true",
        help="fail at once, saying where to put it, when a data set is not in --data-dir "
        "(instead of letting TFDS download it)",
    )
    parser.add_argument("--out", help="output folder (default: results/<task>)")
    parser.add_argument("--print-every", type=int, default=10, help="epochs between progress lines")
    parser.add_argument("--no-xla", action="store_true", help="compile without XLA")
    args = parser.parse_args(argv)
    if args.list:
        print(task_listing())
        return None
    if args.experiments:
        print(experiments.table(findings=args.experiments == "full"), end="")
        return None
    if args.grid and not args.tune:
        parser.error("--grid is the sweep of --tune; give --tune too")
    try:
        return run_comparison(
            task=args.task,
            optimizers=args.optimizers,
            seeds=args.seeds,
            epochs=args.epochs,
            batch_size=args.batch_size,
            learning_rates=_learning_rates(parser, args.learning_rate),
            tune=args.tune,
            grid=args.grid,
            data_dir=args.data_dir,
            download=not args.no_download,
            out_dir=args.out,
            jit_compile=not args.no_xla,
            print_every=args.print_every,
        )
    except (MissingDataError, ValueError) as error:
        print(f"error: {error}", file=sys.stderr)
        raise SystemExit(2) from error


def _learning_rates(parser, values):
    if not values:
        return None
    try:
        if len(values) == 1 and "=" not in values[0]:
            return float(values[0])
        pairs = [value.split("=", 1) for value in values]
        if any(len(pair) != 2 for pair in pairs):
            raise ValueError
        return {name: float(rate) for name, rate in pairs}
    except ValueError:
        parser.error("--learning-rate takes one RATE or ENTRY=RATE pairs")


if __name__ == "__main__":
    main()
