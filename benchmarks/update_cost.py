"""Update cost, memory and training throughput of every optimizer, against Keras's own.

An optimizer step is elementwise work over every parameter, so its floor is
memory traffic: a step that reads and writes k parameter-sized tensors makes k
passes over memory. Keras's Adam makes 7 (read g, m, v, θ; write m, v, θ).
Each optimizer's update time is reported as a ratio to Adam measured in the
same process, and that ratio divided by k/7, its traffic bound (1.0 means "as
cheap as its traffic allows, relative to Adam").

    python benchmarks/update_cost.py                    # all tables
    python benchmarks/update_cost.py --sizes 1 4 --no-training --repeats 20
    KERAS_BACKEND=jax python benchmarks/update_cost.py --out benchmarks/results/jax

Timings interleave the optimizers round by round (so drifts in machine speed
hit all of them alike) and report medians.
"""

import argparse
import concurrent.futures
import dataclasses
import json
import multiprocessing
import pathlib
import platform
import sys
import time
from typing import Callable

import keras
import numpy as np
import tensorflow as tf

import keras_momenta as km

RESULTS = pathlib.Path(__file__).resolve().parent / "results"


@dataclasses.dataclass(frozen=True)
class Entry:
    name: str
    make: Callable[[], keras.optimizers.Optimizer]
    # Parameter-sized tensors read or written per step (gradient included).
    passes: float
    # Parameter-sized state tensors the algorithm needs at least.
    minimum_state: float
    baseline: bool = False


def _keras_and_package_entries():
    sgd = keras.optimizers.SGD
    entries = [
        Entry("keras SGD", lambda: sgd(0.01), 3, 0, baseline=True),
        Entry("keras SGD Nesterov", lambda: sgd(0.01, momentum=0.9, nesterov=True), 5, 1, True),
        Entry("keras Adam", lambda: keras.optimizers.Adam(1e-3), 7, 2, baseline=True),
        # Expectigrad reads g, s, its rounding error, n, m, θ and writes all
        # but g (the float32 sum carries its rounding error: exact past 2³¹ steps).
        Entry("Expectigrad", lambda: km.Expectigrad(1e-3), 11, 4),
        # IGT reads g, v, θ and writes v, θ and the model variable; the inner
        # step adds its own traffic (Adam: m and v, read and written).
        Entry("IGT(SGD)", lambda: km.IGT(sgd(0.01)), 6, 2),
        Entry("IGT(SGD momentum)", lambda: km.IGT(sgd(0.01, momentum=0.9), 0.1), 8, 3),
        Entry("IGT(Adam)", lambda: km.IGT(keras.optimizers.Adam(1e-3), 0.1), 10, 4),
    ]
    optional = {
        "MSSD": lambda cls: Entry("M-SSD", lambda: cls(1e-3), 5, 1),
        "MSVAG": lambda cls: Entry("M-SVAG", lambda: cls(1e-3), 7, 2),
        "AdamStar": lambda cls: Entry("ADAM*", lambda: cls(1e-3), 7, 2),
        "AM1SGD": lambda cls: Entry("AM1-SGD (m=5)", lambda: cls(0.1), 5 + 3 / 5, 2),
        "AM2SGD": lambda cls: Entry("AM2-SGD (m=5)", lambda: cls(0.1), 8, 6),
    }
    for attribute, entry in optional.items():
        if hasattr(km, attribute):
            entries.append(entry(getattr(km, attribute)))
    return entries


ENTRIES = _keras_and_package_entries()


def realistic_shapes(total):
    """Dense, convolution and bias shapes of a network with about `total` parameters."""
    width = max(8, int(np.sqrt(total / 40)))
    channels = max(8, int(np.sqrt(total / 180)))
    block = [
        (width, 4 * width),
        (4 * width,),
        (4 * width, width),
        (width,),
        (3, 3, channels, channels),
        (channels,),
    ]
    shapes, count = [], 0
    while count < total:
        shape = block[len(shapes) % len(block)]
        size = int(np.prod(shape))
        if count + size > total and len(shape) > 1:
            shape = (total - count,)
            size = total - count
        shapes.append(shape)
        count += size
    return shapes


def state_copies(optimizer):
    """Optimizer state as a number of parameter-sized copies (scalar counters excluded)."""
    shared, wrapped = [], optimizer
    while wrapped is not None:
        shared += [wrapped.iterations, getattr(wrapped, "_learning_rate", None)]
        wrapped = getattr(wrapped, "inner_optimizer", None)
    sizes = [
        int(np.prod(v.shape))
        for v in optimizer.variables
        if not any(v is s for s in shared)
        and not (v.shape == () and "int" in v.dtype)
        and not v.path.endswith("point_state")  # 3 integers per variable
    ]
    return sum(sizes)


def _compiled_step(optimizer, grads, variables, jit_compile):
    """A function that makes one compiled optimizer step and waits for it."""
    if keras.backend.backend() == "jax":
        return _jax_step(optimizer, grads, variables)

    step = tf.function(lambda: optimizer.apply(grads, variables), jit_compile=jit_compile)

    def run():
        step()
        optimizer.iterations.numpy()  # waits for the step to finish

    return run


def _jax_step(optimizer, grads, variables):
    """`stateless_apply` under `jax.jit` with the state donated, as Keras's JAX
    trainer does (so that XLA may update it in place)."""
    import jax

    state = [[v.value for v in variables], [v.value for v in optimizer.variables]]
    apply = jax.jit(
        lambda trainable, optimizer_state, g: optimizer.stateless_apply(optimizer_state, g, trainable),
        donate_argnums=(0, 1),
    )

    def run():
        state[:] = apply(state[0], state[1], grads)
        jax.block_until_ready(state)

    return run


def time_updates(entries, total, repeats, jit_compile, seed=0):
    """Median seconds per `optimizer.apply` for each entry, interleaved."""
    rng = np.random.default_rng(seed)
    shapes = realistic_shapes(total)
    grads = [keras.ops.convert_to_tensor(rng.normal(size=s).astype(np.float32)) for s in shapes]
    runs = {}
    for entry in entries:
        variables = [keras.Variable(np.zeros(s, np.float32)) for s in shapes]
        optimizer = entry.make()
        optimizer.build(variables)

        runs[entry.name] = (_compiled_step(optimizer, grads, variables, jit_compile), optimizer)
    for fn, _ in runs.values():  # compile and warm up
        for _ in range(3):
            fn()
    samples = {name: [] for name in runs}
    for _ in range(repeats):
        for name, (fn, _) in runs.items():
            start = time.perf_counter()
            fn()
            samples[name].append(time.perf_counter() - start)
    state = {name: state_copies(optimizer) / total for name, (_, optimizer) in runs.items()}
    return {name: float(np.median(s)) for name, s in samples.items()}, state


def _time_named_group(names, total, repeats, jit_compile):
    entries = [e for e in ENTRIES if e.name in names]
    return time_updates(entries, total, repeats, jit_compile)


def time_groups(groups, total, repeats, jit_compile):
    """`time_updates` for each group; several groups each in a fresh process.

    TensorFlow keeps the memory of a timed group's variables after they are
    gone (about their size again for every group), so at the sizes that need
    groups each one runs in a process of its own.
    """
    if len(groups) == 1:
        return [time_updates(groups[0], total, repeats, jit_compile)]
    context = multiprocessing.get_context("spawn")
    results = []
    for group in groups:
        with concurrent.futures.ProcessPoolExecutor(1, mp_context=context) as pool:
            names = [e.name for e in group]
            results.append(pool.submit(_time_named_group, names, total, repeats, jit_compile).result())
    return results


def timing_groups(entries, total, max_interleaved):
    """The entries timed together: all at once, or each with the Keras baselines.

    Every optimizer's variables are alive while a group is timed, so above
    `max_interleaved` parameters each package optimizer gets its own run
    beside the baselines (its ratio to Adam still comes from one run).
    """
    if total <= max_interleaved:
        return [entries]
    baselines = [e for e in entries if e.baseline]
    return [baselines + [e] for e in entries if not e.baseline] or [baselines]


def update_table(entries, sizes_m, repeats, jit_compile, max_interleaved=16_000_000):
    rows, timings, states = [], {}, {}
    for size_m in sizes_m:
        total = int(size_m * 1_000_000)
        seconds, ratios = {}, {}
        groups = timing_groups(entries, total, max_interleaved)
        for group_seconds, state in time_groups(groups, total, repeats, jit_compile):
            states.update(state)
            for name, value in group_seconds.items():
                seconds.setdefault(name, []).append(value)
                ratios.setdefault(name, []).append(value / group_seconds["keras Adam"])
        for entry in entries:
            ms = float(np.median(seconds[entry.name]))
            ratio = float(np.median(ratios[entry.name]))
            rows.append(
                f"| {size_m:g}M | {entry.name} | {ms * 1e3:.2f} | "
                f"{ms / total * 1e9:.2f} | {ratio:.2f} | "
                f"{ratio / (entry.passes / 7):.2f} |"
            )
            timings.setdefault(entry.name, []).append((total, ms))
    grouped = [f"{m:g}M" for m in sizes_m if m * 1_000_000 > max_interleaved]
    header = [
        f"XLA: {'yes' if jit_compile else 'no'}; median of {repeats} interleaved runs."
        + (
            f" At {', '.join(grouped)} each package optimizer ran beside the Keras "
            f"baselines in a run of its own (memory); baseline rows are medians over those runs."
            if grouped
            else ""
        ),
        "",
        "| N | optimizer | ms | ns/param | ratio to Adam | ratio / (k/7) |",
        "|---|---|---|---|---|---|",
    ]
    return "\n".join(header + rows) + "\n", timings, states


def scaling_table(timings):
    lines = ["| optimizer | fitted exponent of time against N |", "|---|---|"]
    for name, points in timings.items():
        if len(points) >= 2:
            n, t = np.log([p[0] for p in points]), np.log([p[1] for p in points])
            lines.append(f"| {name} | {np.polyfit(n, t, 1)[0]:.2f} |")
    return "\n".join(lines) + "\n"


def memory_table(entries, states):
    lines = [
        "| optimizer | traffic k | state (parameter copies) | algorithm minimum |",
        "|---|---|---|---|",
    ]
    for entry in entries:
        lines.append(
            f"| {entry.name} | {entry.passes:g} | {states[entry.name]:.2f} | {entry.minimum_state:g} |"
        )
    return "\n".join(lines) + "\n"


# ------------------------------------------------------------ training throughput


def mlp():
    return keras.Sequential(
        [
            keras.Input((32, 32, 3)),
            keras.layers.Flatten(),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(512, activation="relu"),
            keras.layers.Dense(10),
        ]
    )


def resnet20():
    """ResNet-20 for CIFAR (He et al., 2016): 3 stages of 3 basic blocks."""

    def block(x, filters, stride):
        shortcut = x
        y = keras.layers.Conv2D(filters, 3, stride, padding="same", use_bias=False)(x)
        y = keras.layers.ReLU()(keras.layers.BatchNormalization()(y))
        y = keras.layers.Conv2D(filters, 3, padding="same", use_bias=False)(y)
        y = keras.layers.BatchNormalization()(y)
        if stride != 1 or shortcut.shape[-1] != filters:
            shortcut = keras.layers.Conv2D(filters, 1, stride, use_bias=False)(shortcut)
            shortcut = keras.layers.BatchNormalization()(shortcut)
        return keras.layers.ReLU()(keras.layers.Add()([y, shortcut]))

    inputs = keras.Input((32, 32, 3))
    x = keras.layers.Conv2D(16, 3, padding="same", use_bias=False)(inputs)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization()(x))
    for stage, filters in enumerate((16, 32, 64)):
        for i in range(3):
            x = block(x, filters, 2 if stage > 0 and i == 0 else 1)
    x = keras.layers.GlobalAveragePooling2D()(x)
    return keras.Model(inputs, keras.layers.Dense(10)(x))


def training_throughput(entries, build_model, steps, batch_size=128, rounds=5):
    """Training steps per second on one synthetic CIFAR-shaped batch, per entry.

    Each step is Keras's compiled train function (`train_on_batch`, XLA);
    rounds of `steps` steps interleave the optimizers, and the median round
    counts.
    """
    rng = np.random.default_rng(0)
    x = rng.normal(size=(batch_size, 32, 32, 3)).astype(np.float32)
    y = rng.integers(0, 10, size=(batch_size,))
    models = {}
    for entry in entries:
        keras.utils.set_random_seed(0)
        model = build_model()
        model.compile(
            optimizer=entry.make(),
            loss=keras.losses.SparseCategoricalCrossentropy(from_logits=True),
            jit_compile=True,
        )
        for _ in range(3):  # compile and warm up
            model.train_on_batch(x, y)
        models[entry.name] = model
    samples = {name: [] for name in models}
    for _ in range(rounds):
        for name, model in models.items():
            start = time.perf_counter()
            for _ in range(steps):
                loss = model.train_on_batch(x, y)
            samples[name].append(steps / (time.perf_counter() - start))
            if not np.isfinite(loss):
                raise RuntimeError(f"{name} diverged on the throughput batch")
    return {name: float(np.median(s)) for name, s in samples.items()}


def throughput_table(results_by_model):
    lines = ["| model | optimizer | steps/s | ratio to Adam |", "|---|---|---|---|"]
    for model_name, results in results_by_model.items():
        adam = results["keras Adam"]
        for name, rate in results.items():
            lines.append(f"| {model_name} | {name} | {rate:.2f} | {rate / adam:.2f} |")
    return "\n".join(lines) + "\n"


def machine():
    if keras.backend.backend() == "jax":
        import jax

        framework = f"JAX {jax.__version__}"
        devices = [d.platform.upper() for d in jax.devices()]
    else:
        framework = f"TensorFlow {tf.__version__}"
        devices = [d.device_type for d in tf.config.list_physical_devices()]
    return (
        f"{platform.processor() or platform.machine()}, {keras.backend.backend()} "
        f"backend, {framework}, Keras {keras.__version__}, devices: {', '.join(devices)}"
    )


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[1, 4, 16, 64], help="millions")
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--optimizers", nargs="+", help="entry names (default: all)")
    parser.add_argument("--no-training", action="store_true")
    parser.add_argument("--training-steps", type=int, default=10, help="ResNet-20 steps per round (MLP: 5×)")
    parser.add_argument("--training-rounds", type=int, default=5)
    parser.add_argument(
        "--max-interleaved",
        type=float,
        default=16,
        help="millions of parameters up to which all optimizers are timed in one run",
    )
    parser.add_argument("--out", default=str(RESULTS))
    args = parser.parse_args(argv)
    entries = [e for e in ENTRIES if not args.optimizers or e.name in args.optimizers or e.baseline]
    out = pathlib.Path(args.out)
    out.mkdir(parents=True, exist_ok=True)

    sections = [f"Machine: {machine()}\n"]
    xla_table, timings, states = update_table(entries, args.sizes, args.repeats, True, int(args.max_interleaved * 1e6))
    sections += ["## Update cost, XLA\n", xla_table, "## Scaling (XLA)\n", scaling_table(timings)]
    if keras.backend.backend() == "tensorflow":  # JAX always compiles with XLA
        plain_table, _, _ = update_table(
            entries, args.sizes, args.repeats, False, int(args.max_interleaved * 1e6)
        )
        sections += ["## Update cost, no XLA\n", plain_table]
    sections += ["## Optimizer state\n", memory_table(entries, states)]
    if not args.no_training:
        results = {
            "MLP 3072-512-512-10": training_throughput(
                entries, mlp, args.training_steps * 5, rounds=args.training_rounds
            ),
            "ResNet-20": training_throughput(
                entries, resnet20, args.training_steps, rounds=args.training_rounds
            ),
        }
        sections += [
            f"## Training throughput (batch 128, XLA, median of {args.training_rounds} "
            f"interleaved rounds of {args.training_steps * 5} MLP / {args.training_steps} "
            f"ResNet-20 steps)\n",
            throughput_table(results),
        ]
    text = "\n".join(sections)
    (out / "update_cost.md").write_text(text)
    (out / "update_cost.json").write_text(json.dumps({"timings": timings, "state": states}, indent=1))
    print(text)
    print(f"Tables in {out.resolve() / 'update_cost.md'}", file=sys.stderr)


if __name__ == "__main__":
    main()
