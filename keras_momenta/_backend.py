"""Everything that depends on the Keras backend or on private TensorFlow/Keras API.

The optimizers are written in `keras.ops`; what `keras.ops` cannot express
lives here, each with a `keras.ops` path wherever one exists, so that a new
backend or front end has one file to read:

* XLA detection (`compiling_with_xla`);
* `tf.distribute`: placing state beside its variable (`colocated_with`),
  writing every replica's copy between steps (`update_replicas`), summing
  values across replicas inside a step (`sum_across_replicas`), and which
  traced function and replica a call belongs to (`execution_context`);
* row-sparse gradients (`tf.IndexedSlices`, e.g. from `keras.layers.Embedding`);
* reading and writing one row of a table variable (AM2-SGD's point table);
* per-example gradients (`MinibatchVarianceModel`) and the private Keras
  model API it needs;
* `maximum`, `minimum` and `divide_no_nan` that keep 64-bit floats on every
  backend (Keras's PyTorch backend computes them, and `ops.matmul`, in
  float32 for float64 inputs: its type promotion maps 64-bit types to 32-bit
  ones, as JAX does without `JAX_ENABLE_X64`).

Row-sparse gradients. Optimizers write state with `assign`, `assign_add` and
`assign_sub`, which the TensorFlow backend turns into scatter updates for
`IndexedSlices`. Two things are left to the optimizer:

* duplicate indices: the dense gradient sums them, so a nonlinear function of
  the gradient (g², sign g) must see the sum. `deduplicate` sums each group
  of repeated rows into its first occurrence and zeroes the others (harmless
  to scatter-add updates), or gives the sum to every occurrence (so that
  scatter updates write the same value for each). It keeps the static number
  of rows, so it compiles under XLA (unlike `tf.unique`).
* per-row arithmetic with state: `map_rows` applies a function to the
  gradient rows and the matching rows of per-variable state.

An update that moves every row anyway (momentum keeps moving rows the
gradient does not touch) gains nothing from the sparse form and takes
`to_dense`. On other backends gradients are always dense and these helpers
are the identity.
"""

import collections
import contextlib

import keras
from keras import ops


def _is_tensorflow():
    return keras.backend.backend() == "tensorflow"


def _raw(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


# ---------------------------------------------------------------- dtypes


def _in_dtype_of_first(x1, x2):
    x1 = ops.convert_to_tensor(x1)
    return x1, ops.convert_to_tensor(x2, dtype=x1.dtype)


def maximum(x1, x2):
    """`ops.maximum(x1, x2)` in the dtype of `x1`."""
    if keras.backend.backend() != "torch":
        return ops.maximum(x1, x2)
    import torch

    return torch.maximum(*_in_dtype_of_first(x1, x2))


def minimum(x1, x2):
    """`ops.minimum(x1, x2)` in the dtype of `x1`."""
    if keras.backend.backend() != "torch":
        return ops.minimum(x1, x2)
    import torch

    return torch.minimum(*_in_dtype_of_first(x1, x2))


def divide_no_nan(x1, x2):
    """`ops.divide_no_nan(x1, x2)` (0 where x2 = 0) in the dtype of `x1`."""
    if keras.backend.backend() != "torch":
        return ops.divide_no_nan(x1, x2)
    import torch

    x1, x2 = _in_dtype_of_first(x1, x2)
    zero = x2 == 0
    return torch.where(zero, torch.zeros_like(x1), x1 / torch.where(zero, torch.ones_like(x2), x2))


# ---------------------------------------------------------------- XLA


def compiling_with_xla():
    """True while tracing a step that XLA will compile.

    TensorFlow traces `tf.function(jit_compile=True)` (what Keras's
    `jit_compile=True` uses) inside an XLA context; JAX always compiles with
    XLA. An update can then pick the form XLA compiles best, e.g. without
    branches, which XLA turns into selects over whole tensors.
    """
    backend = keras.backend.backend()
    if backend == "jax":
        return True
    if backend != "tensorflow":
        return False
    try:
        from tensorflow.python.framework import ops as tf_ops
        from tensorflow.python.ops import control_flow_util
    except ImportError:  # pragma: no cover - a TensorFlow without these modules
        return False
    return control_flow_util.GraphOrParentsInXlaContext(tf_ops.get_default_graph())


def holds_values(variables):
    """Whether the variables hold their values.

    JAX's `fit` takes the values out of the model's and the optimizer's
    variables while it trains and puts them back at the end; a step that
    fails before they were first handed back leaves them empty when `fit`
    finalizes (private Keras API: a JAX variable's `_value`).
    """
    if keras.backend.backend() != "jax":
        return True
    return all(getattr(v, "_value", True) is not None for v in variables)


# ------------------------------------------------------- distribution


def colocated_with(optimizer, reference_variable):
    """A context that places new state beside `reference_variable`.

    Mirrors the TensorFlow backend's `add_variable_from_reference`, which
    places each slot beside its model variable under a `tf.distribute`
    strategy; elsewhere there is nothing to do.
    """
    strategy = getattr(optimizer, "_distribution_strategy", None)
    if strategy is None:
        return contextlib.nullcontext()
    return strategy.extended.colocate_vars_with(_raw(reference_variable))


def update_replicas(optimizer, fn, variable, *others):
    """Run `fn(variable, *others)` on every replica's copies, between steps.

    Under a `tf.distribute` strategy each replica's copy of `variable` and of
    the other (optimizer) variables is written through the strategy, as Keras
    writes them in a step, so the copies stay identical.
    """
    strategy = getattr(optimizer, "_distribution_strategy", None)
    if strategy is None:
        fn(variable, *others)
        return
    _update_through(strategy, fn, variable, others)


def _update_through(strategy, fn, variable, others):
    strategy.extended.update(
        _raw(variable), fn, args=tuple(_raw(v) for v in others), group=False
    )


def execution_context():
    """What identifies the Python execution a call belongs to.

    "eager" when running eagerly, else the function graph being traced (seen
    through the branch graphs of `cond` and `while`, so that a call traced
    inside `LossScaleOptimizer`'s conditional belongs to the function that
    contains it), together with the replica under a `tf.distribute` strategy.
    Other backends trace a step without a graph object to name, and run one
    replica per process: every call there is ("eager", 0).
    """
    if not _is_tensorflow():
        return ("eager", 0)
    import tensorflow as tf
    from tensorflow.python.ops import control_flow_v2_func_graphs as branch_graphs

    replica = tf.distribute.get_replica_context()
    replica_id = 0 if replica is None else int(tf.get_static_value(replica.replica_id_in_sync_group))
    if tf.executing_eagerly():
        return ("eager", replica_id)
    graph = tf.compat.v1.get_default_graph()
    branch_types = (
        branch_graphs.CondBranchFuncGraph,
        branch_graphs.WhileBodyFuncGraph,
        branch_graphs.WhileCondFuncGraph,
    )
    while isinstance(graph, branch_types) and graph.outer_graph is not None:
        graph = graph.outer_graph
    return (id(graph), replica_id)


def sum_across_replicas(optimizer, values, write):
    """All-reduce `values` (a list of tensors) by summing over replicas, then
    call `write(update, values)` once to write state with them.

    `update(variable, fn, *others)` runs `fn(variable, *others)` on every
    replica's copies, like `update_replicas`. Called in replica context under
    a `tf.distribute` strategy (inside a step), the values are the replicas'
    own and are summed; elsewhere they are used as they are.
    """
    if not _is_tensorflow():
        write(lambda variable, fn, *others: fn(variable, *others), values)
        return
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is not None and values and tf.distribute.has_strategy():
        values = context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    def in_cross_replica_context(distribution, values):
        write(lambda variable, fn, *others: _update_through(distribution, fn, variable, others), values)

    tf.__internal__.distribute.interim.maybe_merge_call(
        in_cross_replica_context, optimizer._distribution_strategy, values
    )


def in_replica_function():
    """Whether this is a function traced in a replica of a `tf.distribute`
    strategy (`strategy.run` inside a `tf.function`), where creating
    optimizer state fails."""
    if not _is_tensorflow():
        return False
    import tensorflow as tf

    return (
        tf.distribute.has_strategy()
        and not tf.distribute.in_cross_replica_context()
        and not tf.executing_eagerly()
    )


def replicas_in_sync():
    """The number of replicas a step runs on (1 outside a `tf.distribute` strategy)."""
    if not _is_tensorflow():
        return 1
    import tensorflow as tf

    return tf.distribute.get_strategy().num_replicas_in_sync


# -------------------------------------------------- row-sparse gradients


def is_row_sparse(gradient):
    if not _is_tensorflow():
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
    """The gradient (dense or row-sparse) as `dtype`."""
    if is_row_sparse(gradient):
        import tensorflow as tf

        return tf.IndexedSlices(
            tf.cast(gradient.values, dtype), gradient.indices, gradient.dense_shape
        )
    return ops.cast(gradient, dtype)


def map_rows(fn, gradient, *states):
    """`fn(gradient, *states)`, computed only on the gradient's rows if sparse.

    `states` are tensors or variables shaped like the gradient's variable.
    Returns what `fn` returns (a tensor or a list of tensors), or the same as
    `IndexedSlices` with the gradient's indices.
    """
    if not is_row_sparse(gradient):
        return fn(gradient, *states)
    import tensorflow as tf

    rows = [tf.gather(ops.convert_to_tensor(s), gradient.indices) for s in states]
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


# ------------------------------------------ tables and conditional writes


def read_row(table, index):
    """Row `index` of a table variable, reading only that row."""
    if _is_tensorflow():
        import tensorflow as tf

        # On a resource variable `tf.gather` reads one row; reading the whole
        # table first would make the following row write copy all of it.
        return tf.gather(table.value, index)
    return ops.take(ops.convert_to_tensor(table), index, axis=0)


def write_row(optimizer, table, index, row):
    """Set row `index` of a table variable to `row`, through `optimizer.assign`."""
    if _is_tensorflow():
        import tensorflow as tf

        indices = ops.reshape(index, (1,))
        optimizer.assign(table, tf.IndexedSlices(row[None], indices, table.shape))
        return
    optimizer.assign(table, _new_value(table, RowWrite(index, row)))


class RowWrite(collections.namedtuple("RowWrite", "index row")):
    """A new value for one row of a table variable (see `conditional_writes`)."""


def conditional_writes(optimizer, predicate, true_writes, false_writes):
    """Make the writes of one of two branches, chosen by a boolean tensor.

    Each branch function returns a list of (variable, value) pairs, the same
    variables in the same order; a value may be a `RowWrite`, which changes
    one row of a table variable. TensorFlow writes inside the chosen branch,
    so that it reads and writes only what it uses (a row write is a scatter);
    backends whose conditionals cannot write variables (JAX traces them as
    pure functions) compute the new values in the branch and write them
    after.
    """
    if _is_tensorflow():

        def writing(writes):
            def branch():
                for variable, value in writes():
                    if isinstance(value, RowWrite):
                        write_row(optimizer, variable, value.index, value.row)
                    else:
                        optimizer.assign(variable, value)

            return branch

        ops.cond(predicate, writing(true_writes), writing(false_writes))
        return

    written = []

    def computing(writes):
        def branch():
            pairs = writes()
            written[:] = [variable for variable, _ in pairs]
            return [_new_value(variable, value) for variable, value in pairs]

        return branch

    values = ops.cond(predicate, computing(true_writes), computing(false_writes))
    for variable, value in zip(written, values):
        optimizer.assign(variable, value)


def _new_value(variable, value):
    if not isinstance(value, RowWrite):
        return ops.cast(value, variable.dtype)
    index = ops.convert_to_tensor(value.index)
    start = (index,) + (ops.zeros((), index.dtype),) * len(value.row.shape)
    row = ops.cast(value.row, variable.dtype)[None]
    return ops.slice_update(ops.convert_to_tensor(variable), start, row)


# ------------------------------------------------ per-example gradients


def check_per_example_gradients():
    """Raise a `ValueError` unless this backend has `per_example_gradients`."""
    if not _is_tensorflow():
        raise ValueError(
            f"`MinibatchVarianceModel` computes per-example gradients with "
            f"TensorFlow (`tf.vectorized_map`) and needs the TensorFlow backend "
            f"(KERAS_BACKEND=tensorflow); this is the {keras.backend.backend()!r} "
            f"backend. Here, compute Σₖ (∂ℓₖ/∂θ)² yourself and pass it to "
            f"`optimizer.add_minibatch_statistics` before each `apply`, or use "
            f"variance='moving_average'."
        )


def per_example_gradients(one_example, examples, variables):
    """The gradient of each example's loss, vectorised over the batch.

    `one_example(example)` computes, for one example (a structure of tensors
    with a leading batch axis of 1), `(y_pred, loss, scaled_loss)`. Returns
    the stacked `y_pred` and `loss` of all examples and, for each of
    `variables`, the stacked gradients of `scaled_loss` (None for a variable
    the loss does not depend on).
    """
    check_per_example_gradients()
    import tensorflow as tf

    connected = []  # which variables the loss depends on (known when traced)

    def gradients_of(example):
        batch_of_one = keras.tree.map_structure(lambda t: t[None], example)
        with tf.GradientTape() as tape:
            y_pred, loss, scaled_loss = one_example(batch_of_one)
        gradients = tape.gradient(scaled_loss, variables)
        connected[:] = [g is not None for g in gradients]
        gradients = [ops.convert_to_tensor(g) for g in gradients if g is not None]  # IndexedSlices
        return keras.tree.map_structure(lambda t: t[0], y_pred), loss, gradients

    y_pred, losses, stacked = tf.vectorized_map(gradients_of, examples)
    stacked = iter(stacked)
    return y_pred, losses, [next(stacked) if c else None for c in connected]


def layers_with_batch_or_random_state(model):
    """The layers of `model` whose training output for one example depends on
    the others (`BatchNormalization`) or on random draws (private Keras API:
    a layer's seed generators)."""
    return [
        layer
        for layer in model._flatten_layers(include_self=False)
        if isinstance(layer, keras.layers.BatchNormalization) or layer._seed_generators
    ]


def loss_tracker(model):
    """The metric behind the "loss" that `fit` reports (private Keras API)."""
    return model._loss_tracker
