"""Cost of the mini-batch variance estimate: a `fit` step of
`km.MinibatchVarianceModel` + `MSVAG(variance="minibatch")` against plain
training with `MSVAG(variance="moving_average")`, on the paper's models.

The mini-batch estimate needs Σₖ (∂ℓₖ/∂θ)² over the B examples of a batch.
`MinibatchVarianceModel` computes the B per-example gradients in one
vectorised pass (`tf.vectorized_map`), so a step reads and writes B times the
parameters once more than plain training: the cost grows with B × parameters
and is bound by memory traffic, not arithmetic.

Synthetic data of the right shapes (nothing is downloaded); every step is
timed inside `fit` after a warm-up (compilation); the table shows the fastest
of `--repeats` timings of `--steps` steps.

    python benchmarks/minibatch_cost.py [--models mnist_mlp cifar10_cnn] [--steps 10] [--repeats 2]
"""

import argparse
import pathlib
import time

import keras
import numpy as np
import tensorflow as tf

import keras_momenta as km
from keras_momenta.compare.models import cifar10_cnn, mlp

MODELS = {
    # name: (builder, input shape, batch size)
    "mnist_mlp": (lambda: mlp(784, (1000, 500, 100), l2=1e-4), (784,), 128),
    "cifar10_cnn": (cifar10_cnn, (32, 32, 3), 256),
    "small_mlp": (lambda: mlp(40, (100, 100)), (40,), 100),
}


def step_time(name, minibatch, jit_compile, steps, repeats, batch_size=None):
    """Seconds per `fit` step (fastest of `repeats` runs of `steps` steps)."""
    build, shape, default_batch = MODELS[name]
    batch_size = batch_size or default_batch
    keras.utils.set_random_seed(0)
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, *shape)).astype("float32")
    y = rng.integers(0, 10, size=batch_size)
    data = tf.data.Dataset.from_tensors((x, y)).repeat()
    model = build()
    if minibatch:
        model = km.MinibatchVarianceModel(model)
    variance = "minibatch" if minibatch else "moving_average"
    model.compile(
        optimizer=km.MSVAG(0.01, variance=variance),
        loss="sparse_categorical_crossentropy",
        jit_compile=jit_compile,
    )
    model.fit(data, steps_per_epoch=2, epochs=1, verbose=0)  # compile
    timings = []
    for _ in range(repeats):
        start = time.perf_counter()
        model.fit(data, steps_per_epoch=steps, epochs=1, verbose=0)
        timings.append((time.perf_counter() - start) / steps)
    return min(timings), model.count_params(), batch_size


def run(models, steps, repeats, xla_modes=(False, True), batch_size=None):
    rows = []
    for name in models:
        for jit_compile in xla_modes:
            plain, params, batch = step_time(name, False, jit_compile, steps, repeats, batch_size)
            minibatch, _, _ = step_time(name, True, jit_compile, steps, repeats, batch_size)
            rows.append(
                {"model": name, "parameters": params, "batch": batch, "xla": jit_compile,
                 "plain": plain, "minibatch": minibatch}
            )
    return rows


def table(rows):
    lines = [
        "| model | parameters | batch B | XLA | plain step (ms) | mini-batch variance step (ms) "
        "| ratio | per-example gradients (B × parameters, float32) |",
        "|---|---|---|---|---|---|---|---|",
    ]
    for r in rows:
        memory = r["batch"] * r["parameters"] * 4 / 2**20
        lines.append(
            f"| {r['model']} | {r['parameters']:,} | {r['batch']} | {'yes' if r['xla'] else 'no'} "
            f"| {r['plain'] * 1e3:.1f} | {r['minibatch'] * 1e3:.1f} "
            f"| {r['minibatch'] / r['plain']:.1f}× | {memory:,.0f} MiB |"
        )
    return "\n".join(lines) + "\n"


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--models", nargs="+", default=["mnist_mlp", "cifar10_cnn"], choices=sorted(MODELS))
    parser.add_argument("--steps", type=int, default=10)
    parser.add_argument("--repeats", type=int, default=2)
    parser.add_argument("--out", default=str(pathlib.Path(__file__).parent / "results"))
    args = parser.parse_args(argv)
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    text = table(run(args.models, args.steps, args.repeats))
    (out / "minibatch_cost.md").write_text(text)
    print(text)
    print(f"Table in {out.resolve()}")
    return text


if __name__ == "__main__":
    main()
