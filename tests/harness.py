"""The parts of a Keras optimizer step that every optimizer shares, in NumPy.

`KerasSemantics` wraps a paper reference with Keras's documented behaviour
around `update_step`: loss-scale unscaling, gradient accumulation (mean over
the accumulated micro-steps, learning-rate schedules evaluated at the
micro-step count), clipping (`clipnorm`, `global_clipnorm`, `clipvalue`),
decoupled weight decay before the update, and the model-variable EMA.

Optimizers with a mini-batch variance estimate also take per-example
statistics `(square_sums, batch_size)` with each gradient: they are of the
unscaled per-example losses, so loss scaling and clipping leave them alone,
and they add up over accumulated micro-steps (B is then the examples of all).
"""

import re

import numpy as np


# Each Keras optimizer argument shared by all optimizers: (optimizer kwargs,
# `KerasSemantics` kwargs) of a value that changes the trajectory.
SHARED_ARGUMENTS = {
    "clipnorm": ({"clipnorm": 1.0}, {"clipnorm": 1.0}),
    "clipvalue": ({"clipvalue": 0.5}, {"clipvalue": 0.5}),
    "global_clipnorm": ({"global_clipnorm": 1.0}, {"global_clipnorm": 1.0}),
    "loss_scale_factor": ({"loss_scale_factor": 128.0}, {"loss_scale_factor": 128.0}),
    "gradient_accumulation_steps": (
        {"gradient_accumulation_steps": 3},
        {"gradient_accumulation_steps": 3},
    ),
    "use_ema": (
        {"use_ema": True, "ema_momentum": 0.9},
        {"use_ema": True, "ema_momentum": 0.9},
    ),
}


class KerasSemantics:
    def __init__(
        self,
        reference,
        learning_rate,
        weight_decay=None,
        decay_mask=None,
        clipnorm=None,
        clipvalue=None,
        global_clipnorm=None,
        use_ema=False,
        ema_momentum=0.99,
        loss_scale_factor=None,
        gradient_accumulation_steps=None,
    ):
        self.reference = reference
        self.learning_rate = learning_rate
        self.weight_decay = weight_decay
        self.decay_mask = decay_mask
        self.clipnorm = clipnorm
        self.clipvalue = clipvalue
        self.global_clipnorm = global_clipnorm
        self.use_ema = use_ema
        self.ema_momentum = ema_momentum
        self.loss_scale_factor = loss_scale_factor
        self.accumulation = gradient_accumulation_steps or 1
        self.calls = 0
        self.applied = 0
        self.accumulated = None
        self.accumulated_statistics = None
        self.ema = None

    def _lr(self):
        lr = self.learning_rate
        return float(lr(self.calls)) if callable(lr) else float(lr)

    def step(self, params, grads, statistics=None):
        params = [np.asarray(p, np.float64) for p in params]
        grads = [np.asarray(g, np.float64) for g in grads]
        if self.loss_scale_factor:
            grads = [g / self.loss_scale_factor for g in grads]
        if self.accumulated is None:
            self.accumulated = [np.zeros_like(g) for g in grads]
        self.accumulated = [a + g for a, g in zip(self.accumulated, grads)]
        if statistics is not None:
            self._accumulate_statistics(statistics)
        lr = self._lr()
        self.calls += 1
        if self.calls % self.accumulation:
            return self._track_ema(params)
        grads = [a / self.accumulation for a in self.accumulated]
        self.accumulated = None
        extra = {}
        if self.accumulated_statistics is not None:
            extra["statistics"] = self.accumulated_statistics
            self.accumulated_statistics = None
        grads = self._clip(grads)
        if self.weight_decay:
            mask = self.decay_mask or [True] * len(params)
            if hasattr(self.reference, "apply_weight_decay"):
                # Optimizers whose model variable is not their iterate decay
                # the iterate themselves.
                self.reference.apply_weight_decay(params, lr, self.weight_decay, mask)
            else:
                params = [
                    p - lr * self.weight_decay * p if decays else p
                    for p, decays in zip(params, mask)
                ]
        params = self.reference.step(params, grads, lr, **extra)
        self.applied += 1
        return self._track_ema(params)

    def _accumulate_statistics(self, statistics):
        square_sums, batch_size = statistics
        square_sums = [np.asarray(s, np.float64) for s in square_sums]
        if self.accumulated_statistics is not None:
            previous_sums, previous_size = self.accumulated_statistics
            square_sums = [a + s for a, s in zip(previous_sums, square_sums)]
            batch_size = previous_size + batch_size
        self.accumulated_statistics = (square_sums, batch_size)

    def output_point(self, params):
        """The optimizer's answer: its own output point, or the parameters."""
        if hasattr(self.reference, "output_point"):
            return self.reference.output_point()
        return params

    def _clip(self, grads):
        if self.clipnorm:
            return [g * min(1.0, self.clipnorm / max(np.linalg.norm(g), 1e-300)) for g in grads]
        if self.global_clipnorm:
            norm = np.sqrt(sum(np.sum(g**2) for g in grads))
            return [g * min(1.0, self.global_clipnorm / max(norm, 1e-300)) for g in grads]
        if self.clipvalue:
            return [np.clip(g, -self.clipvalue, self.clipvalue) for g in grads]
        return grads

    def _track_ema(self, params):
        if self.use_ema:
            if self.ema is None:
                self.ema = [p.copy() for p in params]
            else:
                m = self.ema_momentum
                self.ema = [m * e + (1 - m) * p for e, p in zip(self.ema, params)]
        return params


SHAPES = {"scalar": (), "vector": (7,), "matrix": (4, 5), "kernel4d": (3, 3, 2, 4)}


# A variable larger than any of an optimizer's scalar state, for checking that
# a compiled step updates its state in place.
IN_PLACE_SHAPE = (64, 65)


def large_copies(hlo_text, elements=int(np.prod(IN_PLACE_SHAPE))):
    """The shapes of the copies of `elements` or more elements that an optimized
    XLA module makes every time it runs (in its entry computation; a loop body,
    such as AM2-SGD's table fill at a run's first step, runs only when needed).

    XLA writes a buffer in place unless something still needs its old value;
    otherwise it copies it first, which for optimizer state costs two extra
    passes over the memory (ten for a point table of five rows).
    """
    entry = hlo_text[hlo_text.index("\nENTRY"):]
    shapes = re.findall(r"= \w+\[([\d,]*)\]\S* copy\(", entry)
    dims = [[int(d) for d in shape.split(",") if d] for shape in shapes]
    return [tuple(d) for d in dims if int(np.prod(d)) >= elements]


def gradient_stream(shapes, steps, seed=0):
    """Gradients with exact zeros, whole-zero stretches and sign changes."""
    rng = np.random.default_rng(seed)
    stream = []
    for t in range(steps):
        grads = []
        for shape in shapes:
            g = rng.normal(size=shape) * rng.choice([0.1, 1.0, 10.0])
            g = np.where(rng.random(size=shape) < 0.2, 0.0, g)
            if t % 17 < 3:  # some early steps have no signal at all
                g = np.zeros(shape)
            grads.append(np.asarray(g, np.float64))
        stream.append(grads)
    return stream


def initial_params(shapes, seed=1):
    rng = np.random.default_rng(seed)
    return [np.asarray(rng.normal(size=s), np.float64) for s in shapes]


def minibatch_statistics(stream, seed=2):
    """Per-example statistics `(square_sums, batch_size)` for each step of `stream`.

    Built from a chosen unbiased variance ŝ of the batch mean, so that
    ((1/B)·Σₖ∇ℓₖ² − g²)/(B − 1) = ŝ: zero for some coordinates, from far
    below to far above g², and batches of one example (no variance at all).
    """
    rng = np.random.default_rng(seed)
    statistics = []
    for grads in stream:
        batch_size = int(rng.choice([1, 2, 4, 8]))
        square_sums = []
        for g in grads:
            noise = rng.normal(size=g.shape) * rng.choice([0.0, 0.1, 1.0, 3.0], size=g.shape)
            s_hat = noise**2 * (g**2 + 0.01)
            square_sums.append(batch_size * (g**2 + (batch_size - 1) * s_hat))
        statistics.append((square_sums, batch_size))
    return statistics


def least_squares_gradients(params, xb, yb):
    """The mini-batch gradient of Keras's "mse" for a Dense(1) layer, params = [kernel, bias]."""
    residual = xb @ params[0] + params[1] - yb
    return [2 * xb.T @ residual / len(xb), 2 * residual.sum(axis=0) / len(xb)]


def per_variable_fit(references, params, x, y, epochs, learning_rate, batch_size=16, first_gradient_at=None):
    """`fit` of a Dense(1) layer on "mse" with one reference per variable.

    For elementwise algorithms this equals one reference for all variables,
    and lets each variable's run start (`restart`) on its own. The first
    gradient is taken at `first_gradient_at` if given (the point the model
    held), every other at the references' own points. Returns the points.
    """
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            at, first_gradient_at = first_gradient_at or params, None
            grads = least_squares_gradients(at, x[start : start + batch_size], y[start : start + batch_size])
            params = [r.step([p], [g], learning_rate)[0] for r, p, g in zip(references, params, grads)]
    return params


# ------------------------------------------- a model that `fit` trains


def least_squares_data(n=64, features=3, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, features))
    y = x @ rng.normal(size=(features, 1)) + 0.3 + 0.1 * rng.normal(size=(n, 1))
    return x, y


def linear_model(features=3, seed=0):
    import keras

    keras.utils.set_random_seed(seed)
    return keras.Sequential([keras.Input((features,)), keras.layers.Dense(1)])


def least_squares_reference(case, weights, x, y, batch_size, epochs, **semantics):
    """Mini-batch gradient of Keras's "mse" for a Dense(1) layer, in NumPy.

    Returns the optimizer's answer, which `fit` writes into the model at its
    end (the parameters themselves unless the optimizer has an output point).
    """
    semantics = KerasSemantics(case.make_reference(), case.learning_rate, **semantics)
    params = [np.asarray(w, np.float64) for w in weights]
    for _ in range(epochs):
        for start in range(0, len(x), batch_size):
            xb, yb = x[start : start + batch_size], y[start : start + batch_size]
            residual = xb @ params[0] + params[1] - yb
            grads = least_squares_gradients(params, xb, yb)
            statistics = None
            if case.statistics is not None:
                # Σₖ of the squared per-example gradients 2rₖxₖ and 2rₖ.
                square_sums = [4 * (xb**2).T @ residual**2, 4 * np.sum(residual**2, axis=0)]
                statistics = (square_sums, len(xb))
            params = semantics.step(params, grads, statistics)
    return semantics.output_point(params)


def case_model(case, seed=0):
    """The linear model, wrapped as the case needs for `fit`."""
    model = linear_model(seed=seed)
    return case.wrap_model(model) if case.wrap_model else model


# ------------------------------------- the results tables of benchmarks/README.md
#
# benchmarks/README.md holds tables copied from what the scripts in
# benchmarks/ print (and write under benchmarks/results/). Each script's test
# checks that the committed tables have the structure its code prints now:
# the same header cells and the same row labels, in order. The numbers of a
# short run differ; the structure must not. Which tables are checked, where:
#
#   Reddi problem (the α = 0.1 table) ..... test_reddi_benchmark.py
#   Expectigrad's momentum forms .......... test_expectigrad_momentum_benchmark.py
#   IGT on a noisy quadratic (both) ....... test_igt_benchmarks.py
#   LQR policy gradient ................... test_igt_benchmarks.py
#   Stochastic quadratic problems ......... test_dissecting_adam_benchmarks.py
#   Variance adaptation factors ........... test_dissecting_adam_benchmarks.py (every cell)
#   Cost of the mini-batch variance ....... test_dissecting_adam_benchmarks.py
#   Amortized Nesterov, least squares ..... test_amortized_convex_benchmark.py
#   Continuing training ................... test_continue_fit_benchmark.py
#   Performance (issue #6), Performance on JAX (issue #12): update cost (XLA,
#       no XLA), scaling, optimizer state, training throughput
#       ................................... test_update_cost_benchmark.py
#
# Not checked: the tables of the "What changed ..." subsections (a history of
# measurements, written by hand), the AM1-SGD table under "Update cost, no
# XLA" (columns of two separate runs side by side), the Reddi table of steps
# per step size α (cells of three runs, one per α, rearranged), and the table of "AM-SGD
# comparison entries" (columns chosen by hand from the comparison runner's
# summary.md, not a benchmarks/ script). `committed_tables` leaves out all
# but the last.

import dataclasses  # noqa: E402
import pathlib  # noqa: E402

BENCHMARKS_README = pathlib.Path(__file__).resolve().parents[1] / "benchmarks" / "README.md"

# Tables written by hand: under a heading that starts with one of these ...
HAND_WRITTEN_SECTIONS = ("What changed",)
# ... or with one of these first two header cells.
HAND_WRITTEN_HEADERS = (("N", "AM1-SGD, no XLA: ms"), ("α", "Adam"))


@dataclasses.dataclass(frozen=True)
class MarkdownTable:
    heading: str  # the nearest heading above the table ("" if none)
    header: tuple
    rows: tuple  # of tuples of cells

    @property
    def labels(self):
        """The first-column cells: the row names."""
        return self.column(0)

    @property
    def row_count(self):
        return len(self.rows)

    def column(self, index):
        return tuple(row[index] for row in self.rows)

    def structure(self, label_columns=1):
        """(header cells, the first `label_columns` cells of each row)."""
        return self.header, tuple(row[:label_columns] for row in self.rows)

    def replace(self, *pairs):
        """This table with `old` replaced by `new` in every cell, for each
        (old, new): a committed full run's sizes put into a short run's terms."""

        def cell(text):
            for old, new in pairs:
                text = text.replace(old, new)
            return text

        return dataclasses.replace(
            self,
            header=tuple(cell(c) for c in self.header),
            rows=tuple(tuple(cell(c) for c in row) for row in self.rows),
        )


def _cells(line):
    return tuple(cell.strip() for cell in line.strip()[1:-1].split("|"))


def _is_separator(line):
    return re.fullmatch(r"\|(\s*:?-+:?\s*\|)+", line.strip()) is not None


def _markdown_lines(text):
    """(line, heading level or 0) for every line outside fenced code blocks."""
    fenced = False
    for line in text.splitlines():
        if line.lstrip().startswith("```"):
            fenced = not fenced
            continue
        if fenced:
            continue
        match = re.match(r"(#+) ", line)
        yield line, len(match.group(1)) if match else 0


def _tables(lines):
    """The markdown tables in (line, level) pairs, each with its heading."""
    tables, heading, block = [], "", []

    def close():
        if len(block) >= 2 and _is_separator(block[1]):
            header = _cells(block[0])
            rows = tuple(_cells(line) for line in block[2:])
            tables.append(MarkdownTable(heading, header, rows))
        block.clear()

    for line, level in lines:
        if line.lstrip().startswith("|"):
            block.append(line)
            continue
        close()
        if level:
            heading = line[level:].strip()
    close()
    return tables


def printed_tables(text):
    """The markdown tables in a script's printed (or written) output, in order."""
    return _tables(_markdown_lines(text))


def _hand_written(table):
    return table.heading.startswith(HAND_WRITTEN_SECTIONS) or any(
        table.header[: len(cells)] == cells for cells in HAND_WRITTEN_HEADERS
    )


def committed_tables(section_heading, readme=BENCHMARKS_README):
    """The tables of the `## ` or `### ` section of benchmarks/README.md whose
    heading is `section_heading` or, failing that, the only one that starts
    with it; a section runs to the next heading of its level or above. Tables
    written by hand (`HAND_WRITTEN_SECTIONS`, `HAND_WRITTEN_HEADERS`) are left out.
    """
    lines = list(_markdown_lines(pathlib.Path(readme).read_text(encoding="utf-8")))
    headings = [
        (i, level, line[level:].strip()) for i, (line, level) in enumerate(lines) if level in (2, 3)
    ]
    matches = [h for h in headings if h[2] == section_heading] or [
        h for h in headings if h[2].startswith(section_heading)
    ]
    if len(matches) != 1:
        found = [h[2] for h in matches]
        raise LookupError(f"{len(matches)} sections of {readme} start with {section_heading!r}: {found}")
    start, level, _ = matches[0]
    end = next((i for i, lv, _ in headings if i > start and lv <= level), len(lines))
    return [t for t in _tables(lines[start:end]) if not _hand_written(t)]


def table_under(tables, heading):
    """The one table of `tables` whose heading starts with `heading`."""
    (table,) = [t for t in tables if t.heading.startswith(heading)]
    return table
