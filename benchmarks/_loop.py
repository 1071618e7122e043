"""Shared pieces of the benchmarks' compiled runs."""

import numpy as np
import tensorflow as tf


def scan(step, inputs, chunk=5000):
    """`step(row)` for every row of `inputs` in order; its float64 results stacked.

    `step` takes one row of `inputs` as a tensor, typically applies one
    optimizer step, and returns a float64 tensor of fixed shape (what to
    record). The loop is a `tf.while_loop` compiled with XLA and run `chunk`
    rows per call: a Python call per step would cost far more than the step,
    and a single call over a long run would hold every input in the graph.
    """
    inputs = np.asarray(inputs)

    @tf.function(jit_compile=True)
    def run_chunk(rows):
        def body(i, records):
            return i + 1, records.write(i, step(rows[i]))

        n = tf.shape(rows)[0]
        records = tf.TensorArray(tf.float64, size=n)
        _, records = tf.while_loop(lambda i, _: i < n, body, (0, records))
        return records.stack()

    pieces = [run_chunk(tf.constant(inputs[i : i + chunk])) for i in range(0, len(inputs), chunk)]
    return np.concatenate([piece.numpy() for piece in pieces])


def normals(seeds, step, shape):
    """Standard normals of `shape` for each seed at `step`: (len(seeds), *shape) float64.

    Stateless Philox keyed by (seed, step): a seed's draws are the same for
    every method and whichever seeds run beside it.
    """
    step = tf.cast(step, tf.int64)
    return tf.stack(
        [
            tf.random.stateless_normal(
                shape, tf.stack([tf.constant(seed, tf.int64), step]), dtype=tf.float64, alg="philox"
            )
            for seed in seeds
        ]
    )


def reported_value(optimizer, variable):
    """The point a method answers with: keras_momenta's output point (IGT's true
    iterate), otherwise the variable itself."""
    if hasattr(optimizer, "evaluation_weights"):
        return optimizer.evaluation_weights([variable])[0]
    return variable.value
