"""Data of the reference tasks: splits, offline generators and TFDS readers.

A task's data is a `Splits`: unbatched training, validation and test examples
in a fixed order. The runner shuffles, augments and batches the training
examples itself, from the run's seed and the epoch, so that a run restarted
from a checkpoint sees the same batches as an uninterrupted one.
"""

import contextlib
import contextvars
import dataclasses
import functools
import os
from typing import Callable, Optional

import numpy as np
import tensorflow as tf


class MissingDataError(FileNotFoundError):
    """A task's data is neither on this machine nor downloadable from it."""


_downloads = contextvars.ContextVar("downloads", default=True)


@contextlib.contextmanager
def downloads(allowed):
    """Whether TFDS may download data sets that are not prepared yet (it
    retries for minutes on a machine without internet access)."""
    token = _downloads.set(bool(allowed))
    try:
        yield
    finally:
        _downloads.reset(token)


@dataclasses.dataclass(frozen=True)
class Splits:
    train: tf.data.Dataset
    validation: tf.data.Dataset
    test: tf.data.Dataset
    # Training examples per epoch (for steps per epoch and schedules).
    train_examples: int
    # An augmentation that needs the loaded data (`augment(example, label,
    # seed)`, as `Task.augment`, which it replaces): e.g. drawing training
    # episodes from the loaded training classes.
    augment: Optional[Callable] = None

    def map(self, function, splits=("train", "validation", "test")):
        """The same splits with `function(features, label)` applied to every
        example of `splits`."""
        return dataclasses.replace(
            self,
            **{
                split: getattr(self, split).map(function, num_parallel_calls=tf.data.AUTOTUNE)
                for split in splits
            },
        )

    def map_evaluation(self, function):
        """`function` on the validation and test examples only (training
        examples get it from the task's augmentation)."""
        return self.map(function, splits=("validation", "test"))


def from_arrays(train, test, validation_fraction=0.1, validation=None):
    """`Splits` from (features, labels) arrays; the validation examples are the
    last `validation_fraction` of the training arrays unless given."""
    if validation is None:
        train, validation = split_off(train, validation_fraction)
    return Splits(
        train=tf.data.Dataset.from_tensor_slices(train),
        validation=tf.data.Dataset.from_tensor_slices(validation),
        test=tf.data.Dataset.from_tensor_slices(test),
        train_examples=len(train[0]),
    )


def split_off(arrays, fraction):
    n = len(arrays[0])
    held_out = max(1, int(round(n * fraction)))
    return (
        tuple(a[: n - held_out] for a in arrays),
        tuple(a[n - held_out :] for a in arrays),
    )


@functools.lru_cache(maxsize=2)
def mnist1d_arrays(samples=None):
    """MNIST-1D (40 features, 10 classes), generated offline by the `mnist1d`
    package: its default 4000 train / 1000 test, or `samples` split 80/20 the
    same way (the generator's own seed, so the same arrays every time)."""
    from mnist1d.data import get_dataset_args, make_dataset

    arguments = get_dataset_args()
    if samples is not None:
        arguments.num_samples = samples
    data = make_dataset(arguments)
    return (
        (data["x"].astype(np.float32), data["y"].astype(np.int64)),
        (data["x_test"].astype(np.float32), data["y_test"].astype(np.int64)),
    )


def mnist1d(data_dir=None):
    del data_dir  # generated, never read
    return from_arrays(*mnist1d_arrays())


# The stand-in for ImageNet-scale runs: ten times MNIST-1D's default size
# (40,000 train / 10,000 test; about 11 s to generate).
MNIST1D_LARGE_SAMPLES = 50_000


def mnist1d_large(data_dir=None):
    del data_dir
    return from_arrays(*mnist1d_arrays(MNIST1D_LARGE_SAMPLES))


def digits(data_dir=None, image=False):
    """scikit-learn's bundled 8×8 digits (1797 images, shipped with the
    package), scaled to [0, 1]; 360 test images, 10% of the rest for validation."""
    del data_dir
    from sklearn.datasets import load_digits

    bunch = load_digits()
    x = (bunch.data / 16.0).astype(np.float32)
    if image:
        x = x.reshape(-1, 8, 8, 1)
    y = bunch.target.astype(np.int64)
    order = np.random.default_rng(0).permutation(len(x))
    x, y = x[order], y[order]
    return from_arrays((x[360:], y[360:]), (x[:360], y[:360]))


def data_dir_or_default(data_dir):
    return data_dir or os.environ.get("TFDS_DATA_DIR")


def tfds_splits(name, data_dir=None, validation="train[-10%:]", train="train[:-10%]",
                test="test", manual=False):
    """A TFDS dataset's splits as (features, label) pairs.

    `data_dir` (else `TFDS_DATA_DIR`, else TFDS's default) is where TFDS finds
    prepared data or prepares it; `manual=True` datasets (ImageNet) are built
    from archives the user placed in `<data_dir>/downloads/manual` (TFDS's
    `manual_dir`, passed to it explicitly).
    """
    import tensorflow_datasets as tfds

    data_dir = data_dir_or_default(data_dir)
    builder = tfds.builder(name, data_dir=data_dir)
    # A dataset that needs a manual download says so itself (`manual` only documents it).
    manual = manual or bool(getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", None))
    manual_dir = manual_dir_of(builder)
    # A manual dataset is built from local archives: nothing to download.
    if not (_downloads.get() or manual or builder.is_prepared()):
        raise MissingDataError(_missing_tfds_message(name, builder, manual, None))
    try:
        builder.download_and_prepare(
            download_config=tfds.download.DownloadConfig(
                try_download_gcs=False, manual_dir=manual_dir if manual else None
            )
        )
    except Exception as error:  # noqa: BLE001 - every failure means the same to the user
        raise MissingDataError(_missing_tfds_message(name, builder, manual, error)) from error
    train_ds, validation_ds, test_ds = builder.as_dataset(
        split=[train, validation, test], as_supervised=True, shuffle_files=False
    )
    examples = int(train_ds.cardinality())
    if examples < 0:
        examples = builder.info.splits[train].num_examples
    return Splits(train_ds, validation_ds, test_ds, examples)


def manual_dir_of(builder):
    """`<data_dir root>/downloads/manual`, TFDS's default `manual_dir`."""
    return os.path.join(os.fspath(builder.data_dir_root), "downloads", "manual")


def _missing_tfds_message(name, builder, manual, error):
    where = builder.data_dir
    if manual:
        instructions = " ".join((getattr(builder, "MANUAL_DOWNLOAD_INSTRUCTIONS", "") or "").split())
        how = (
            f"place its archives in the manual_dir {manual_dir_of(builder)} "
            "(TFDS builds the dataset from them on first use"
            + (f"; TFDS says: {instructions}" if instructions else "")
            + ")"
        )
    else:
        how = (
            f"prepare it on a machine with internet access (`tfds build {name} --data_dir DIR`) "
            "and copy DIR here"
        )
    if error is None:
        why = "and downloads are off"
    else:
        detail = str(error).splitlines()[0] if str(error) else ""
        why = f"and could not be made here ({type(error).__name__}: {detail})"
    return (
        f"The TFDS dataset {name!r} is not prepared in {where} {why}. To use it, "
        f"{how}, then pass `--data-dir DIR` (or set TFDS_DATA_DIR)."
    )


def text_file(data_dir, relative, task, how):
    """Path of a local text file a task needs, or a clear error."""
    if not data_dir:
        raise MissingDataError(
            f"Task {task!r} reads local files: pass `--data-dir DIR` with {relative} under DIR ({how})."
        )
    path = os.path.join(data_dir, relative)
    if not os.path.exists(path):
        raise MissingDataError(f"Task {task!r} needs {path} ({how}); it does not exist.")
    return path
