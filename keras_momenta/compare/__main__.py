"""Command line of the comparison runner: `python -m keras_momenta.compare`."""

import argparse

from keras_momenta.compare.optimizers import OPTIMIZERS
from keras_momenta.compare.runner import run_comparison
from keras_momenta.compare.tasks import TASKS


def main(argv=None):
    parser = argparse.ArgumentParser(
        prog="python -m keras_momenta.compare",
        description="Train a reference task with several optimizers over several seeds.",
    )
    parser.add_argument("--task", default="mnist1d_mlp", choices=sorted(TASKS))
    parser.add_argument(
        "--optimizers",
        nargs="+",
        choices=sorted(OPTIMIZERS),
        help="optimizer entries (default: the task's own list)",
    )
    parser.add_argument("--seeds", nargs="+", type=int, default=[0, 1, 2])
    parser.add_argument("--epochs", type=int, help="default: the task's own")
    parser.add_argument("--out", help="output folder (default: results/<task>)")
    parser.add_argument("--no-xla", action="store_true", help="compile without XLA")
    args = parser.parse_args(argv)
    run_comparison(
        task=args.task,
        optimizers=args.optimizers,
        seeds=args.seeds,
        epochs=args.epochs,
        out_dir=args.out,
        jit_compile=not args.no_xla,
    )


if __name__ == "__main__":
    main()
