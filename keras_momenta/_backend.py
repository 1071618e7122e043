"""What depends on the Keras backend (TensorFlow's distribution and XLA), in one place."""

import keras


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


def _raw(variable):
    return variable.value if isinstance(variable, keras.Variable) else variable


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
    strategy.extended.update(
        _raw(variable), fn, args=tuple(_raw(v) for v in others), group=False
    )


def execution_context():
    """What identifies the Python execution a call belongs to.

    "eager" when running eagerly, else the function graph being traced (seen
    through the branch graphs of `cond` and `while`, so that a call traced
    inside `LossScaleOptimizer`'s conditional belongs to the function that
    contains it), together with the replica under a `tf.distribute` strategy.
    """
    if keras.backend.backend() != "tensorflow":
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
    if keras.backend.backend() != "tensorflow":
        write(lambda variable, fn, *others: fn(variable, *others), values)
        return
    import tensorflow as tf

    context = tf.distribute.get_replica_context()
    if context is not None and values and tf.distribute.has_strategy():
        values = context.all_reduce(tf.distribute.ReduceOp.SUM, values)

    def in_cross_replica_context(distribution, values):
        def update(variable, fn, *others):
            distribution.extended.update(
                _raw(variable), fn, args=tuple(_raw(v) for v in others), group=False
            )

        write(update, values)

    tf.__internal__.distribute.interim.maybe_merge_call(
        in_cross_replica_context, optimizer._distribution_strategy, values
    )
