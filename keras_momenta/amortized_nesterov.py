"""Amortized Nesterov's momentum: AM1-SGD and AM2-SGD (Zhou, Jin, Ding & Cheng, 2020)."""

import numbers
import os
import random

import keras
import numpy as np
from keras import ops

from keras_momenta import _backend
from keras_momenta._base import (
    check_in_range,
    constant,
    keras_arguments,
    state_dtype,
    variable_path_name,
)
from keras_momenta._hash import MASK32, as_int32_bits, point_index
from keras_momenta.output_point import (
    KEEP_ALL_BUT_COUNT,
    OutputPointOptimizer,
    masked,
    read,
    trips_if,
)

OPTIONS = ("I", "II")


# AM2's table index is a 32-bit integer.
MAX_AMORTIZATION = 2**31 - 1

# The steps of the last this many restarts after a learning-rate drop are kept.
RESTART_RECORD_LENGTH = 16


def check_amortization(value):
    if (
        not isinstance(value, numbers.Integral)
        or isinstance(value, bool)
        or not 1 <= value <= MAX_AMORTIZATION
    ):
        raise ValueError(
            f"`amortization` must be an integer in [1, 2**31 - 1] (the paper uses 5); "
            f"got {value!r}."
        )


def check_option(value):
    if value not in OPTIONS:
        raise ValueError(f"`option` must be one of {OPTIONS}; got {value!r}.")


class AmortizedNesterov(OutputPointOptimizer):
    """Shared machinery of AM1-SGD and AM2-SGD (not used directly).

    Each variable's run starts at its first update (and after `restart()`),
    from its value then: the averages, the block and the point table start
    there (see `keras_momenta.output_point`; in `build()` the assignment would
    be lost under `fit`). A variable's constraint applies to every iterate
    before it enters the averages or the table, and to the answer reported.
    """

    projects_answer = True

    def __init__(self, learning_rate, momentum, amortization, option, use_ema=False, **kwargs):
        check_in_range("momentum", momentum, 0.0, 1.0)
        check_amortization(amortization)
        check_option(option)
        if use_ema and option == "II":
            raise ValueError(
                "`use_ema=True` is not supported with option II, whose answer is "
                "already an average of iterates; use option I with `use_ema`."
            )
        super().__init__(learning_rate=learning_rate, use_ema=use_ema, **kwargs)
        self.momentum = float(momentum)
        self.amortization = int(amortization)
        self.option = option
        self._pending_restart_factor = 0.0

    def restart(self):
        """Start the amortization afresh from the current point at the next step.

        As Section 6.1 of the paper advises after a learning-rate drop: the
        next step runs as the first step of a new run started at the current
        training point (the averages and the point table restart there).
        Call it between steps (e.g. from a callback). The restart is kept in
        the optimizer's state, so it survives checkpoints.
        """
        self.restart_runs()

    def restart_on_rate_drop(self, factor):
        """Restart inside the step whenever the learning rate falls to `factor`
        × its highest value since the last restart, or lower (None: never).

        The step compares its learning rate with that reference rate, both
        kept in optimizer variables, so nothing is read back from the device
        between steps, a drop is acted on at the very step it takes effect
        (also with `steps_per_execution > 1`), and checkpoints keep the
        reference. `km.callbacks.RestartOnLearningRateDrop` sets this.
        """
        if factor is not None:
            check_in_range("factor", factor, 0.0, 1.0, low_closed=False)
        value = 0.0 if factor is None else float(factor)
        if not self.built:
            self._pending_restart_factor = value
            return
        _backend.update_replicas(
            self,
            lambda _, drop: drop.assign(ops.stack([constant(value, "float32"), drop[1]])),
            self._trainable_variables[0],
            self._rate_drop,
        )

    def restart_record(self):
        """(restarts after rate drops so far, the steps of the last 16 of them, oldest first).

        A step is the optimizer's `iterations` before the step that restarted.
        Reads the device once.
        """
        if not self.built:
            return 0, []
        record = [int(v) for v in ops.convert_to_numpy(self._restart_record)]
        count, slots = record[0], record[1:]
        kept = min(count, RESTART_RECORD_LENGTH)
        return count, [slots[i % RESTART_RECORD_LENGTH] for i in range(count - kept, count)]

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # [factor (0: off), reference rate]; written in replica context, the
        # same on every replica.
        self._rate_drop = self.add_variable(
            shape=(2,),
            dtype="float32",
            initializer=keras.initializers.Constant([self._pending_restart_factor, 0.0]),
            aggregation="only_first_replica",
            name="rate_drop",
        )
        # [restarts so far, the steps of the last RESTART_RECORD_LENGTH].
        self._restart_record = self.add_variable(
            shape=(1 + RESTART_RECORD_LENGTH,),
            dtype=self._iterations.dtype,
            initializer="zeros",
            aggregation="only_first_replica",
            name="restart_record",
        )

    def _backend_update_step(self, grads, trainable_variables, learning_rate):
        self._restart_if_rate_dropped(learning_rate)
        super()._backend_update_step(grads, trainable_variables, learning_rate)

    def _restart_if_rate_dropped(self, learning_rate):
        drop_state = read(self._rate_drop, "float32")
        factor, reference = drop_state[0], drop_state[1]
        rate = ops.cast(learning_rate, "float32")
        dropped = ops.logical_and(factor > 0, rate <= factor * reference)
        self._rate_drop.assign(
            ops.stack([factor, ops.where(ops.logical_or(dropped, rate > reference), rate, reference)])
        )
        record = read(self._restart_record, self._restart_record.dtype)
        count = record[0]
        positions = ops.arange(1 + RESTART_RECORD_LENGTH, dtype=record.dtype)
        slot = 1 + count % RESTART_RECORD_LENGTH
        step = ops.cast(self._iterations, record.dtype)
        new_record = ops.where(positions == 0, count + 1, ops.where(positions == slot, step, record))
        self._restart_record.assign(ops.where(dropped, new_record, record))
        for state in self._point_states:
            value = read(state, state.dtype)
            state.assign(ops.where(dropped, masked(value, KEEP_ALL_BUT_COUNT), value))

    @property
    def has_output_point(self):
        return self.option == "II"

    def _iterate(self, start, gradient, value, learning_rate):
        """x − η·g for x = `value`, projected by the variable's constraint."""
        gradient = _dense(gradient, value, value.dtype)
        x = sgd_iterate(value, gradient, ops.cast(learning_rate, value.dtype))
        constraint = self._constraint(start.index)
        return x if constraint is None else constraint(x)

    def get_config(self):
        config = super().get_config()
        config.update(
            {"momentum": self.momentum, "amortization": self.amortization, "option": self.option}
        )
        return config


def _never(start):
    """A boolean tensor that is false at run time but not known to be false
    to a compiler (a variable's update count is at least 1)."""
    return ops.less(start.step, 0)


def _dense(gradient, like, dtype):
    """The gradient as a dense `dtype` tensor: every row moves once momentum
    is added, so row-sparse gradients gain nothing."""
    return _backend.to_dense(_backend.cast(gradient, dtype), like.shape)


@keras.saving.register_keras_serializable(package="keras_momenta")
class AM1SGD(AmortizedNesterov):
    """AM1-SGD: SGD with amortized Nesterov's momentum (paper's Algorithm 2).

    With m = `amortization`, starting from x̃ = x₀ and x̃⁺ = 0, each step
    k = 0, 1, ... with stochastic gradient g taken at the model variable x:

        x ← x − η·g
        x̃⁺ ← x̃⁺ + x/m
        every m-th step:  x ← x + β·(x̃⁺ − x̃);  x̃ ← x̃⁺;  x̃⁺ ← 0

    The momentum is injected once per m steps and comes from two consecutive
    averages of m iterates. m = 1 is SGD with Nesterov's momentum.

    Option I reports x (the paper's heuristic option, like Keras's and
    PyTorch's Nesterov SGD); option II reports x̃, the average of the last
    completed block of m iterates (the option the paper analyses). The model
    variables hold x while training; option II's answer is read with
    `evaluation_weights`, swapped in around evaluation by
    `km.callbacks.SwapEvaluationWeights` and put into the model at the end of
    `fit`, after which a further `fit` continues the amortization (see
    `keras_momenta.output_point`).

    Cost: instead of x̃⁺ this class keeps the block's offset
    T = Σ(block's iterates) − m·x̃, so that x̃⁺ − x̃ = T/m. Without XLA a step
    inside a block reads and writes only x and T, and the block-end work runs
    in a branch once per m steps. Under XLA, which turns branches into selects
    that copy the state they touch, every step is one branch-free pass over
    x, T and x̃ with the same formulas. It equals Algorithm 2 up to rounding
    (tested).

    `restart()` starts the amortization afresh (x̃ ← x, empty block) at the
    next step; `km.callbacks.RestartOnLearningRateDrop` calls it after a
    learning-rate drop (Section 6.1).

    State per variable: two copies of the parameters, x̃ and the block's
    offset T (one, x̃, when m = 1); with option II and a float16/bfloat16 variable, one
    more, a stash for the training point while the answer is swapped into the
    model. The state is float32 for 16-bit variables.

    Row-sparse gradients are made dense: every row moves at block ends.

    Reference: K. Zhou, Y. Jin, Q. Ding and J. Cheng, "Amortized Nesterov's
    Momentum: A Robust Momentum and Its Application to Deep Learning", UAI
    2020, Algorithm 2 and Section 6.

    Args:
        learning_rate: η > 0, a float, a `LearningRateSchedule` or a callable.
        momentum: β in [0, 1).
        amortization: m, an integer ≥ 1.
        option: "I" (the answer is the training point x) or "II" (the
            average; see above).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema` (option I
            only: option II's answer is already an average), `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        amortization=5,
        option="II",
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="am1sgd",
        **kwargs,
    ):
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            amortization=amortization,
            option=option,
            **keras_arguments(locals()),
            **kwargs,
        )

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        self._averages = [self.add_state_variable(v, "average") for v in var_list]
        self._offsets = (
            [self.add_state_variable(v, "block_offset") for v in var_list]
            if self.amortization > 1
            else None
        )
        self._set_answer_slots(
            var_list, self._averages if self.option == "II" else [None] * len(var_list)
        )

    def _start_and_average(self, start, point, dtype):
        """(x₀, x̃): where the step continues from and the block's average
        (while option II's answer is in the model, `point` holds x̃)."""
        x0, answer = self._training_point_and_answer(start, point, dtype)
        if self.option == "II":
            return x0, answer
        return x0, read(self._averages[start.index], dtype)

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        start = self._begin_update(variable)
        beta = constant(self.momentum, dtype)
        m = self.amortization
        average = self._averages[start.index]  # x̃
        fresh = start.fresh  # this step starts the run: x̃ ← x₀, empty block
        point = read(variable, dtype)
        if m == 1:  # every step ends a block of one: x̃⁺ = x
            x0, current = self._start_and_average(start, point, dtype)
            x = self._iterate(start, gradient, x0, learning_rate)
            new_point = nesterov_point(x, ops.where(fresh, x0, current), beta)
            self.assign(variable, ops.cast(new_point, variable.dtype))
            # x̃ is written after it is read (see `AM2SGD.update_step` under XLA).
            self.assign(average, computed_after(x, new_point, _never(start)))
            return
        offset = self._offsets[start.index]
        position = ops.mod(start.step, m)
        begins, ends = ops.equal(position, 1), ops.equal(position, 0)

        def any_step():
            # Each tensor is read only before its own write or after the write
            # it depends on, so XLA updates all three in place.
            x0, current = self._start_and_average(start, point, dtype)
            x = self._iterate(start, gradient, x0, learning_rate)
            block_start = ops.where(fresh, x0, current)
            new_offset, new_point, new_average = amortized_step(
                x, read(offset, dtype), current, block_start, begins, ends, fresh, beta, m
            )
            self.assign(offset, new_offset)
            self.assign(variable, ops.cast(new_point, variable.dtype))
            self.assign(average, new_average)

        def inside_block():  # `any_step` where no block begins or ends and the model holds x
            x = self._iterate(start, gradient, point, learning_rate)
            self.assign_add(offset, x)
            self.assign(variable, ops.cast(x, variable.dtype))

        if _backend.compiling_with_xla():
            # XLA would turn the branches into selects that copy the state.
            any_step()
        else:
            special = ops.logical_or(ops.logical_or(begins, ends), ops.logical_or(fresh, start.swapped))
            ops.cond(special, any_step, inside_block)


# The update maths: functions of tensors in `keras.ops`, shared by every front end.


def sgd_iterate(point, gradient, learning_rate):
    """x − η·g."""
    return ops.subtract(point, ops.multiply(learning_rate, gradient))


def nesterov_point(x, previous, beta):
    """(1 + β)·x − β·x_previous: AM1-SGD with m = 1, Nesterov's momentum."""
    return (1 + beta) * x - beta * previous


def amortized_step(x, offset, average, block_start, begins, ends, fresh, beta, amortization):
    """AM1-SGD's state after the new iterate x (Algorithm 2, with the block offset).

    The block's offset T = Σ(block's iterates) − m·x̃ stands for x̃⁺, so that
    x̃⁺ − x̃ = T/m. `begins`/`ends`: this step begins or ends a block of m;
    `fresh`: the run starts here, at `block_start` (otherwise the block
    starts at x̃ = `average`). Returns (T, the model's point, x̃):

        T ← (−m·x̃ at a block's start, else T) + x
        at a block's end:  x ← x + β·T/m;  x̃ ← x̃ + T/m
    """
    size = ops.cast(amortization, x.dtype)
    new_offset = ops.where(begins, -size * block_start, offset) + x
    increment = ops.divide(new_offset, size)  # x̃⁺ − x̃ at a block's end
    new_point = ops.where(ends, x + beta * increment, x)
    # On the first step x̃ = x₀ = (x − T)/m (T = x − m·x₀), up to rounding.
    new_average = ops.where(
        fresh,
        ops.divide(x - new_offset, size),
        ops.where(ends, average + increment, average),
    )
    return new_offset, new_point, new_average


def table_point(new, old, following, beta):
    """AM2-SGD's model point φ_j(new) + β·(φ_{j'} − φ_j(old)) (Algorithm 4)."""
    return new + beta * (following - old)


def table_mean(mean, new, old, amortization):
    """φ̄ after entry j of a table of m points changed from `old` to `new`."""
    return mean + ops.divide(new - old, amortization)


def table_row(table, index):
    """Row `index` of a table tensor."""
    return ops.take(table, index, axis=0)


def with_row(table, index, row):
    """The table tensor with row `index` set to `row`."""
    start = (index,) + (ops.zeros((), index.dtype),) * len(row.shape)
    return ops.slice_update(table, start, ops.cast(row, table.dtype)[None])


def restarted_table(table, start_point, restart):
    """Every row of the table set to `start_point` if `restart`, else the table.

    A loop of m row writes or none, which XLA does in place; a select over
    the whole table would read and write all of it at every step.
    """
    trips = trips_if(restart, ops.shape(table)[0])
    return ops.fori_loop(0, trips, lambda i, values: with_row(values, i, start_point), table)


def computed_after(value, earlier, never):
    """`value`, bit for bit, computed from `earlier` too (`never`: a boolean
    tensor false at run time that the compiler cannot evaluate). Orders XLA's
    instructions, at the cost of reading `earlier` once more."""
    return ops.where(never, ops.cast(earlier, value.dtype), value)


def _table_bytes(amortization, var_list):
    return sum(
        amortization * int(np.prod(v.shape)) * np.dtype(state_dtype(v.dtype)).itemsize
        for v in var_list
    )


def _physical_memory():
    try:
        return os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES")
    except (ValueError, OSError, AttributeError):  # not a POSIX system
        return None


def check_seed(seed):
    if seed is None:
        return
    if not isinstance(seed, numbers.Integral) or isinstance(seed, bool) or not 0 <= seed <= MASK32:
        raise ValueError(f"`seed` must be None or an integer in [0, 2**32 - 1]; got {seed!r}.")


@keras.saving.register_keras_serializable(package="keras_momenta")
class AM2SGD(AmortizedNesterov):
    """AM2-SGD: amortized Nesterov's momentum from a point table (Algorithm 4).

    A table φ of m = `amortization` points per variable, all starting at x₀,
    and (option II) their mean φ̄ = x₀. Each step k with stochastic gradient g
    taken at the model variable x:

        φ_{jₖ} ← x − η·g                      (the other entries unchanged)
        x ← φ_{jₖ}(new) + β·(φ_{jₖ₊₁} − φ_{jₖ}(old))
        φ̄ ← φ̄ + (φ_{jₖ}(new) − φ_{jₖ}(old))/m

    with jₖ uniform in {0, ..., m−1}. The momentum comes from two random past
    iterates of the table. m = 1 is SGD with Nesterov's momentum.

    The index is not drawn from a random-number generator: jₖ is a hash of
    (`seed`, k) (see `point_index`), so it is the same for every variable, on
    every replica and worker and under XLA, and reproducible. The seed is
    kept in an optimizer variable, so checkpoints restore the index sequence.

    Option II (default) reports φ̄ (read it with `evaluation_weights`, swap
    it in with `km.callbacks.SwapEvaluationWeights`; `fit` puts it into the
    model at its end, and a further `fit` continues the run). Option I reports
    x; the paper found option I *unstable* for AM2-SGD and does not recommend
    it (Section 3.1), attributing this to the extra randomness of jₖ.

    `restart()` starts afresh at the next step (every table entry and φ̄ ←
    x); `km.callbacks.RestartOnLearningRateDrop` calls it after a
    learning-rate drop (Section 6.1).

    State per variable: m + 1 copies of the parameters (the table and φ̄; m
    with option I); with option II and a float16/bfloat16 variable, one more,
    a stash for the training point while the answer is swapped into the model.
    The state is float32 for 16-bit variables. A step reads two rows of the
    table and writes one: without XLA in a branch that touches only those
    rows; under XLA in one branch-free pass that XLA does in place (a run's
    first step fills the table in a loop that runs only then).

    Row-sparse gradients are made dense: every row moves with the momentum.

    Reference: K. Zhou, Y. Jin, Q. Ding and J. Cheng, "Amortized Nesterov's
    Momentum: A Robust Momentum and Its Application to Deep Learning", UAI
    2020, Algorithm 4 and Sections 3.1 and 6.

    Args:
        learning_rate: η > 0, a float, a `LearningRateSchedule` or a callable.
        momentum: β in [0, 1).
        amortization: m, an integer ≥ 1.
        option: "I" (the answer is the training point x) or "II" (the
            average; see above).
        **kwargs: the arguments shared by all Keras optimizers (`weight_decay`,
            `clipnorm`, `clipvalue`, `global_clipnorm`, `use_ema` (option I
            only: option II's answer is already an average), `ema_momentum`,
            `ema_overwrite_frequency`, `loss_scale_factor`,
            `gradient_accumulation_steps`, `name`).
        seed: integer in [0, 2³² − 1] for the index sequence; None draws one
            (from Python's `random`, which `keras.utils.set_random_seed` seeds).
    """

    def __init__(
        self,
        learning_rate=0.1,
        momentum=0.9,
        amortization=5,
        option="II",
        seed=None,
        weight_decay=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        ema_overwrite_frequency=None,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
        name="am2sgd",
        **kwargs,
    ):
        check_seed(seed)
        super().__init__(
            learning_rate=learning_rate,
            momentum=momentum,
            amortization=amortization,
            option=option,
            **keras_arguments(locals()),
            **kwargs,
        )
        self.seed = random.randint(0, MASK32) if seed is None else int(seed)

    def build(self, var_list):
        if self.built:
            return
        super().build(var_list)
        # The seed's 32 bits in an int32, which every backend has.
        self._seed = self.add_variable(
            shape=(),
            dtype="int32",
            initializer=keras.initializers.Constant(as_int32_bits(self.seed)),
            aggregation="only_first_replica",
            name="seed",
        )
        self._check_table_memory(var_list)
        self._tables = []
        for variable in var_list:
            try:
                table = self.add_state_variable(
                    variable, "point_table", leading_shape=(self.amortization,)
                )
            except Exception as error:  # out of memory on the device
                raise ValueError(
                    f"AM2-SGD could not create the point table of variable "
                    f"{variable_path_name(variable)!r}: `amortization`="
                    f"{self.amortization} copies of it. The tables of all "
                    f"variables need {_table_bytes(self.amortization, var_list) / 2**30:.3g} GiB. "
                    f"Use a smaller `amortization` (the paper uses 5)."
                ) from error
            self._tables.append(table)
        self._means = (
            [self.add_state_variable(v, "table_mean") for v in var_list]
            if self.option == "II"
            else [None] * len(var_list)
        )
        self._set_answer_slots(var_list, self._means)

    def _check_table_memory(self, var_list):
        needed = _table_bytes(self.amortization, var_list)
        available = _physical_memory()
        if available is not None and needed > available:
            raise ValueError(
                f"`amortization`={self.amortization} needs {needed / 2**30:.3g} GiB for "
                f"AM2-SGD's point tables ({self.amortization} copies of every trainable "
                f"variable), more than this machine's {available / 2**30:.3g} GiB of "
                f"memory. Use a smaller `amortization` (the paper uses 5)."
            )

    def point_index(self, step):
        """The table index jₖ used at 0-based step k = `step` (a tensor or int)."""
        if self.amortization == 1:
            return ops.zeros((), "int32")
        return point_index(self._seed, step, self.amortization)

    def update_step(self, gradient, variable, learning_rate):
        dtype = state_dtype(variable.dtype)
        start = self._begin_update(variable)
        table, mean = self._tables[start.index], self._means[start.index]
        j = self.point_index(self.iterations)
        j_next = self.point_index(self.iterations + 1)
        point = read(variable, dtype)

        def step(x0, old, following, previous):
            """(φ_{jₖ}(new), the model's new point, the new mean or None) from
            φ_{jₖ}(old), φ_{jₖ₊₁} before the table is written, and φ̄."""
            new = self._iterate(start, gradient, x0, learning_rate)
            # φ_{jₖ₊₁} is taken from the updated table: the new entry if jₖ₊₁ = jₖ.
            following = ops.where(ops.equal(j_next, j), new, following)
            new_point = table_point(new, old, following, constant(self.momentum, dtype))
            if mean is None:
                return new, new_point, None
            return new, new_point, table_mean(previous, new, old, constant(self.amortization, dtype))

        if _backend.compiling_with_xla():
            # One pass, no branch (XLA would turn branches into selects over
            # the whole table). XLA writes a buffer in place only when every
            # read of its old value is ordered before the write, and it
            # orders instructions only by what they compute from: so the row
            # write is computed from the new point, which reads both rows
            # and is computed from the new mean, which reads the model's
            # point before it is written. Otherwise XLA copies the table.
            x0, answer = self._training_point_and_answer(start, point, dtype)
            values = restarted_table(ops.convert_to_tensor(table), x0, start.fresh)
            previous = None if mean is None else ops.where(start.fresh, x0, answer)
            new, new_point, new_mean = step(
                x0, table_row(values, j), table_row(values, j_next), previous
            )
            never = _never(start)
            if mean is not None:
                self.assign(mean, new_mean)
                new_point = computed_after(new_point, new_mean, never)
            self.assign(variable, ops.cast(new_point, variable.dtype))
            self.assign(table, with_row(values, j, computed_after(new, new_point, never)))
            return

        def writes(first):
            # `first`: this step starts the run, every table entry at x₀.
            x0, answer = self._training_point_and_answer(start, point, dtype)
            if first:
                new, new_point, new_mean = step(x0, x0, x0, x0)
                rows = ops.reshape(
                    ops.arange(self.amortization, dtype="int32"), (-1,) + (1,) * len(x0.shape)
                )
                table_write = ops.where(ops.equal(rows, j), new[None], x0[None])
            else:
                new, new_point, new_mean = step(
                    x0, _backend.read_row(table, j), _backend.read_row(table, j_next), answer
                )
                table_write = _backend.RowWrite(j, new)
            pairs = [(table, table_write), (variable, ops.cast(new_point, variable.dtype))]
            return pairs + ([] if mean is None else [(mean, new_mean)])

        # Without XLA, separate branches, so that a regular step reads only
        # the two rows it uses and writes one.
        _backend.conditional_writes(
            self, start.fresh, lambda: writes(True), lambda: writes(False)
        )

    def get_config(self):
        config = super().get_config()
        config["seed"] = self.seed
        return config
