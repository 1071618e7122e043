"""Row-sparse gradients (`tf.IndexedSlices`, e.g. from `keras.layers.Embedding`).

Optimizers write state with `self.assign_add`/`assign_sub`, which the
TensorFlow backend turns into scatter updates for `IndexedSlices`. Two things
are left to the optimizer and handled here:

* duplicate indices: the dense gradient sums them, so a nonlinear function of
  the gradient (g², sign g) must see the sum. `deduplicate` sums each group of
  repeated rows into its first occurrence and zeroes the others (harmless to
  scatter-add updates), or gives the sum to every occurrence (so that scatter
  updates write the same value for each). It keeps the static number of
  rows, so it compiles under XLA (unlike `tf.unique`).
* per-row arithmetic with state: `map_rows` applies a function to the gradient
  rows and the matching rows of per-variable state, touching no other row.

An optimizer whose update moves every row anyway (momentum keeps moving rows
the gradient does not touch) gains nothing from the sparse form and can take
`to_dense`.
"""

import keras


def is_row_sparse(gradient):
    if keras.backend.backend() != "tensorflow":
        return False
    import tensorflow as tf

    return isinstance(gradient, tf.IndexedSlices)


def deduplicate(gradient, every_occurrence=False):
    """The same row-sparse gradient with every index carried by one row.

    Each group of repeated rows is summed into its first occurrence and the
    others are zeroed, which is right for scatter-add updates. With
    `every_occurrence=True` every row of a group carries the group's sum
    instead, which is right for scatter updates that write values computed
    from the rows: all writes to an index are then the same.
    """
    if not is_row_sparse(gradient):
        return gradient
    import tensorflow as tf

    order = tf.argsort(gradient.indices, stable=True)
    indices = tf.gather(gradient.indices, order)
    values = tf.gather(gradient.values, order)
    starts_group = tf.concat(
        [tf.ones([1], tf.bool), indices[1:] != indices[:-1]], axis=0
    )
    group = tf.cumsum(tf.cast(starts_group, tf.int32)) - 1
    sums = tf.gather(tf.math.unsorted_segment_sum(values, group, tf.shape(indices)[0]), group)
    if not every_occurrence:
        mask = tf.reshape(
            tf.cast(starts_group, values.dtype),
            tf.concat([tf.shape(starts_group), tf.ones_like(tf.shape(values)[1:])], 0),
        )
        sums = sums * mask
    return tf.IndexedSlices(sums, indices, gradient.dense_shape)


def cast(gradient, dtype):
    if is_row_sparse(gradient):
        import tensorflow as tf

        return tf.IndexedSlices(
            tf.cast(gradient.values, dtype), gradient.indices, gradient.dense_shape
        )
    return keras.ops.cast(gradient, dtype)


def map_rows(fn, gradient, *states):
    """`fn(gradient, *states)`, computed only on the gradient's rows if sparse.

    `states` are tensors or variables shaped like the gradient's variable.
    Returns what `fn` returns (a tensor or a list of tensors), or the same as
    `IndexedSlices` with the gradient's indices.
    """
    if not is_row_sparse(gradient):
        return fn(gradient, *states)
    import tensorflow as tf

    rows = [tf.gather(keras.ops.convert_to_tensor(s), gradient.indices) for s in states]
    result = fn(gradient.values, *rows)

    def slices(values):
        return tf.IndexedSlices(values, gradient.indices, gradient.dense_shape)

    return [slices(r) for r in result] if isinstance(result, list) else slices(result)


def densify(gradient):
    """The dense equivalent (repeated rows summed) of a possibly sparse gradient."""
    if is_row_sparse(gradient):
        import tensorflow as tf

        return tf.convert_to_tensor(gradient)
    return gradient


def to_dense(gradient, shape):
    """The dense equivalent of a gradient (repeated rows summed).

    Uses the variable's static `shape`, so it compiles under XLA even when
    the `IndexedSlices` carry their dense shape as a runtime tensor.
    """
    if not is_row_sparse(gradient):
        return gradient
    import tensorflow as tf

    return tf.math.unsorted_segment_sum(gradient.values, gradient.indices, shape[0])
