"""Optimizers whose state holds points of parameter space: the output-point contract.

IGT keeps its true iterate θ beside the shifted point where gradients are
taken; AM1-SGD and AM2-SGD keep averages and tables of past iterates, and with
option II answer with an average. Such state belongs to the values the model
variables had when it was written, so an `OutputPointOptimizer` tracks, per
model variable, in one integer optimizer variable `point_state` of three
entries (saved and restored with the rest; of the width of the optimizer's
step counter, int64 on TensorFlow and int32 on JAX):

* `update_count`: the updates this variable has had since its run started.
  Its first update (whenever it comes, and after `restart`) starts the
  variable's run from its current value; a variable that never had one is
  its own answer.
* `handed_over` and `fingerprint`: whether the optimizer has handed the
  model variable over (at the end of `fit`, or when the answer is swapped in
  for evaluation), and a digest of the value it handed over. When it takes
  the variable back, a different value means the user changed it
  (`set_weights`, `load_weights`, `assign`): training continues from that
  value, and the variable's run starts afresh there. The same value means the
  model was left alone: all state is kept.

The answer (IGT's θ, option II's average) lives in an *answer slot* per
variable. To put it into the model, the answer and the training point are
exchanged between the variable and the slot; a float16/bfloat16 variable (its
float32 answer would round in the exchange) and a constrained variable whose
answer is projected when reported keep the training point in a *stash*
instead.

Handing over and taking back:

* `load_evaluation_weights` and `restore_training_weights` do it between
  steps (`km.callbacks.SwapEvaluationWeights` calls them around evaluation
  and at the start of `fit`), exactly.
* `finalize_variable_values` (the end of `fit`) hands over.
* A step that finds its variable handed over takes it back itself: the
  gradient was then taken at the answer rather than at the training point,
  and the step goes on from the training point with all state (one gradient
  taken at a nearby point; `SwapEvaluationWeights` makes it exact).

A subclass creates its answer slots in `build` and registers them with
`_set_answer_slots`, starts each `update_step` with `_begin_update`, and
reads the point and the answer through `_training_point_and_answer` (or
`_answer_or_point`). Under XLA these take a hand-over back in a loop that
runs only then, so a regular step reads each tensor once.
"""

import collections

import keras
from keras import ops

from keras_momenta import _backend
from keras_momenta._base import LOW_PRECISION_DTYPES, MomentaOptimizer, variable_path_name
from keras_momenta._hash import fingerprint


def unwrap(optimizer):
    """The optimizer inside `keras.optimizers.LossScaleOptimizer` wrappers."""
    while isinstance(optimizer, keras.optimizers.LossScaleOptimizer):
        optimizer = optimizer.inner_optimizer
    return optimizer


def read(variable, dtype):
    """The variable's current value as a tensor of `dtype`.

    `ops.cast` of a `tf.Variable` to its own dtype returns the variable
    itself, which, used after the variable is written, gives the new value.
    """
    return ops.cast(ops.copy(variable), dtype)


# Multiplying a point state by these sets its update count to 0 (and the
# hand-over flag).
KEEP_ALL_BUT_COUNT = (0, 1, 1)
KEEP_ONLY_FINGERPRINT = (0, 0, 1)


def masked(state, mask):
    state = ops.convert_to_tensor(state)
    return ops.multiply(state, ops.convert_to_tensor(mask, dtype=state.dtype))


def _unstack(state):
    """(update count, handed over, fingerprint) of a point state."""
    return state[0], state[1], state[2]


def trips_if(predicate, trips=1):
    """`trips` if the boolean tensor `predicate`, else 0: the int32 bound of
    a loop that does its work only when needed (see `exchanged_if`)."""
    return ops.cast(ops.where(predicate, trips, 0), "int32")


def exchanged_if(predicate, first, second):
    """(second, first) if the boolean tensor `predicate`, else (first, second).

    A loop of one exchange or none: XLA runs it on the tensors where they lie,
    while a select reads both tensors at every step, in every loop that uses
    either, and a conditional's results are copies.
    """
    return tuple(
        ops.fori_loop(0, trips_if(predicate), lambda _, pair: (pair[1], pair[0]), (first, second))
    )


def replaced_if(predicate, value, replacement):
    """`replacement` if the boolean tensor `predicate`, else `value`, in a
    loop of one copy or none (see `exchanged_if`)."""
    return ops.fori_loop(0, trips_if(predicate), lambda _, current: replacement, value)


UpdateStart = collections.namedtuple("UpdateStart", "index fresh swapped step")
UpdateStart.__doc__ = """What `_begin_update` finds for one variable.

index: the variable's index. fresh: its run starts at this step (first
update, after `restart`, or its value was changed from outside). swapped:
the answer is in the model and the training point aside (a hand-over not yet
taken back). step: the 1-based number of this update in the variable's run.
A variable changed from outside is fresh and not swapped.
"""


class OutputPointOptimizer(MomentaOptimizer):
    """Base of optimizers whose state holds points of parameter space (not used directly)."""

    # Whether the reported answer is passed through the variable's constraint
    # (the averages of AM option II; IGT constrains its iterate in the step).
    projects_answer = False

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._point_states = []
        for variable in var_list:
            with self.colocated_with(variable):
                self._point_states.append(
                    self.add_variable(
                        shape=(3,),  # [update count, handed over, fingerprint]
                        initializer="zeros",
                        dtype=self._iterations.dtype,
                        # Written in replica context too (`_take_back_changed`),
                        # with the same value on every replica.
                        aggregation="only_first_replica",
                        name=f"{variable_path_name(variable)}_point_state",
                    )
                )
        self._answers = [None] * len(var_list)
        self._stashes = [None] * len(var_list)

    def _set_answer_slots(self, var_list, answers):
        """Register the answer slot of each variable (None: the answer is the variable)."""
        self._answers = list(answers)
        self._stashes = [
            self.add_state_variable(v, "stash") if a is not None and self._needs_stash(v) else None
            for v, a in zip(var_list, self._answers)
        ]

    def _needs_stash(self, variable):
        low_precision = keras.backend.standardize_dtype(variable.dtype) in LOW_PRECISION_DTYPES
        return low_precision or (self.projects_answer and variable.constraint is not None)

    @property
    def has_output_point(self):
        raise NotImplementedError

    def _constraint(self, index):
        return self._trainable_variables[index].constraint

    # ------------------------------------------------------------ in a step

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self._take_back_changed(trainable_variables)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def _take_back_changed(self, variables):
        """A handed-over variable whose value changed since starts its run afresh.

        One conditional for all variables, so that their digests are computed
        only on the first step after a hand-over (and traced once).
        """
        states = [self._point_states[self._get_variable_index(v)] for v in variables]
        values = [ops.convert_to_tensor(state) for state in states]
        handed_over = [ops.equal(value[1], 1) for value in values]

        def digests_differ():
            return [
                ops.logical_and(h, ops.not_equal(fingerprint(variable, value.dtype), value[2]))
                for h, variable, value in zip(handed_over, variables, values)
            ]

        changed = ops.cond(
            ops.any(ops.stack(handed_over)),
            digests_differ,
            lambda: [ops.convert_to_tensor(False)] * len(variables),
        )
        for state, value, changed_ in zip(states, values, changed):
            # Update count 0 and not handed over: the run restarts from the value.
            state.assign(ops.where(changed_, masked(value, KEEP_ONLY_FINGERPRINT), value))

    def _begin_update(self, variable):
        """Bookkeeping at the start of `update_step`; returns an `UpdateStart`."""
        index = self._get_variable_index(variable)
        state = self._point_states[index]
        count, flag, recorded = _unstack(read(state, state.dtype))
        fresh = ops.equal(count, 0)
        step = ops.where(fresh, ops.ones_like(count), count + 1)
        self.assign(state, ops.stack([step, ops.zeros_like(flag), recorded]))
        return UpdateStart(index, fresh, ops.equal(flag, 1), step)

    def _training_point_and_answer(self, start, point, dtype):
        """(where the step continues from, the answer slot's value) for a
        model variable holding `point`: the two are exchanged while the
        answer is in the model, unless the training point is in a stash.
        (`point`, None) for a variable without an answer slot."""
        answer, stash = self._answers[start.index], self._stashes[start.index]
        if answer is None:
            return point, None
        stored = read(answer, dtype)
        if stash is not None:
            return ops.where(start.swapped, read(stash, dtype), point), stored
        if _backend.compiling_with_xla():
            return exchanged_if(start.swapped, point, stored)
        return ops.where(start.swapped, stored, point), ops.where(start.swapped, point, stored)

    def _answer_or_point(self, start, point, dtype):
        """The answer slot's value, or `point` (the model's value) at a run's
        first step and while the model holds the answer: where IGT's θ goes
        on from."""
        stored = read(self._answers[start.index], dtype)
        if self._stashes[start.index] is not None:
            return ops.where(start.fresh, point, stored)
        from_point = ops.logical_or(start.fresh, start.swapped)
        if _backend.compiling_with_xla():
            return replaced_if(from_point, stored, point)
        return ops.where(from_point, point, stored)

    # ----------------------------------------------------------- between steps

    def _reported_answer(self, index, value, count, answer):
        """The answer for a variable holding `value` whose slot holds `answer`
        (its run has had `count` updates)."""
        reported = ops.cast(answer, value.dtype)
        constraint = self._constraint(index)
        if self.projects_answer and constraint is not None:
            reported = constraint(reported)
        return ops.where(ops.equal(count, 0), value, reported)

    def evaluation_weights(self, var_list):
        """The values of this optimizer's answer for the given model variables.

        The answer is where the optimizer has got to (IGT's true iterate, the
        averages of AM1/AM2-SGD option II); for a variable without an update
        yet, or changed from outside after the answer was put into the model,
        its own value.
        """
        if not self.built:
            return [ops.convert_to_tensor(v) for v in var_list]
        values = []
        for variable in var_list:
            index = self._get_variable_index(variable)
            value = ops.convert_to_tensor(variable)
            answer = self._answers[index]
            if answer is not None:
                count, flag, _ = _unstack(ops.convert_to_tensor(self._point_states[index]))
                reported = self._reported_answer(index, value, count, answer)
                value = ops.where(ops.equal(flag, 1), value, reported)
            values.append(value)
        return values

    @property
    def evaluation_weights_in_model(self):
        """Whether the model variables hold the answer (after `fit`, or swapped in)."""
        if not self.built:
            return True
        return all(
            int(ops.convert_to_numpy(state)[1]) == 1
            for state, answer in zip(self._point_states, self._answers)
            if answer is not None
        )

    def load_evaluation_weights(self, var_list):
        """Hand the model variables over, with the answer in them.

        The training point is kept in the optimizer; `restore_training_weights`
        (or the next step) puts it back. Variables already handed over are
        left as they are.
        """
        if self.built:
            for variable in var_list:
                self._update_variable_state(variable, self._hand_over)

    def restore_training_weights(self, var_list):
        """Take the model variables back, with the training point in them.

        A variable whose value is no longer the one handed over was changed
        from outside: it keeps that value and its run starts afresh there.
        """
        if self.built:
            for variable in var_list:
                self._update_variable_state(variable, self._take_back)

    def swap_evaluation_weights(self, var_list):
        """Put the answer into the model, or the training point back if it is there."""
        if self.evaluation_weights_in_model:
            self.restore_training_weights(var_list)
        else:
            self.load_evaluation_weights(var_list)

    def finalize_variable_values(self, var_list):
        """At the end of `fit` the model takes the answer; all state is kept.

        A further `fit` continues the run: exactly with
        `km.callbacks.SwapEvaluationWeights` (it puts the training point back
        before the first step), otherwise with its first gradient taken at the
        answer. Weights changed in between are where it continues.
        """
        if not _backend.holds_values(list(var_list) + self.variables):
            return  # a failed JAX `fit`: let its own error through
        # Handed over before Keras's EMA overwrite (option I), which then
        # counts as a change from outside: the run restarts from the average.
        self.load_evaluation_weights(var_list)
        super().finalize_variable_values(var_list)

    def restart_runs(self):
        """Start every variable's run afresh from its current value at its next update."""
        if self.built:
            for variable, state in zip(self._trainable_variables, self._point_states):
                _backend.update_replicas(self, lambda _, s: s.assign(masked(s, KEEP_ALL_BUT_COUNT)), variable, state)

    def _update_variable_state(self, variable, fn):
        index = self._get_variable_index(variable)
        slots = (self._answers[index], self._stashes[index])
        present = [s is not None for s in slots]

        def run(var, state, *values):
            values = iter(values)
            fn(index, var, state, *[next(values) if p else None for p in present])

        _backend.update_replicas(
            self, run, variable, self._point_states[index], *[s for s in slots if s is not None]
        )

    def _hand_over(self, index, var, state, answer, stash):
        count, flag, recorded = _unstack(read(state, state.dtype))
        already = ops.equal(flag, 1)
        if answer is not None:
            current = read(var, var.dtype)
            reported = self._reported_answer(index, current, count, answer)
            kept = stash if stash is not None else answer
            kept.assign(ops.where(already, read(kept, kept.dtype), ops.cast(current, kept.dtype)))
            var.assign(ops.where(already, current, reported))
        recorded = ops.where(already, recorded, fingerprint(var, recorded.dtype))
        state.assign(ops.stack([count, ops.ones_like(flag), recorded]))

    def _take_back(self, index, var, state, answer, stash):
        count, flag, recorded = _unstack(read(state, state.dtype))
        handed_over = ops.equal(flag, 1)
        changed = ops.logical_and(handed_over, ops.not_equal(fingerprint(var, recorded.dtype), recorded))
        restore = ops.logical_and(handed_over, ops.logical_not(changed))
        if answer is not None:
            current = read(var, var.dtype)
            if stash is not None:
                var.assign(ops.where(restore, ops.cast(stash, var.dtype), current))
            else:
                kept = read(answer, answer.dtype)
                answer.assign(ops.where(restore, ops.cast(current, answer.dtype), kept))
                var.assign(ops.where(restore, ops.cast(kept, var.dtype), current))
        count = ops.where(changed, ops.zeros_like(count), count)
        state.assign(ops.stack([count, ops.zeros_like(flag), recorded]))
