"""MurmurHash3's 32-bit finalizer in int64 `keras.ops`, exact on every device.

A bijection of 32-bit integers with full avalanche, computed in int64 with
every product below 2⁵⁰, so it gives the same bits on every device, replica
and backend and under XLA. AM2-SGD's point index and the fingerprint that
tells whether a model variable was changed from outside both use it.
"""

import keras
from keras import ops

MASK32 = 0xFFFFFFFF


def _multiply32(a, c):
    """(a·c) mod 2³² for int64 0 ≤ a < 2³² and a Python int constant c."""
    low, high = c & 0xFFFF, c >> 16
    high_part = ops.left_shift(ops.bitwise_and(a * high, 0xFFFF), 16)
    return ops.bitwise_and(a * low + high_part, MASK32)


def finalize32(h):
    """MurmurHash3's fmix32 of int64 values in [0, 2³²)."""
    h = ops.bitwise_xor(h, ops.right_shift(h, 16))
    h = _multiply32(h, 0x85EBCA6B)
    h = ops.bitwise_xor(h, ops.right_shift(h, 13))
    h = _multiply32(h, 0xC2B2AE35)
    return ops.bitwise_xor(h, ops.right_shift(h, 16))


# The integer view of each float dtype (float64 as two 32-bit words).
_WORD_DTYPES = {"float16": "int16", "bfloat16": "int16", "float32": "int32", "float64": "int32"}


def fingerprint(value):
    """An int64 digest of a float tensor's exact bits at their positions.

    Σᵢ fmix32(wordᵢ ⊕ fmix32(i)) over the tensor's 16- or 32-bit words: an
    integer sum, so it does not depend on the order of the reduction (eager,
    traced or XLA-compiled, any device). A change of one element always
    changes it; unrelated values collide with probability about 2⁻³².
    """
    value = ops.reshape(ops.convert_to_tensor(value), (-1,))
    words = ops.view(value, _WORD_DTYPES[keras.backend.standardize_dtype(value.dtype)])
    words = ops.bitwise_and(ops.cast(words, "int64"), MASK32)
    positions = ops.arange(ops.shape(words)[0], dtype="int64")
    return ops.sum(finalize32(ops.bitwise_xor(words, finalize32(positions))))
