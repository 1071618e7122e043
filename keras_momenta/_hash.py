"""Integer hashing in int64 `keras.ops`, exact on every device.

MurmurHash3's 32-bit finalizer (AM2-SGD's point index) is a bijection of
32-bit integers with full avalanche, computed with every product below 2⁵⁰;
`fingerprint` (whether a model variable was changed from outside) is an
integer sum. Both give the same bits on every device, replica and backend and
under XLA.
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

    Σᵢ (wordᵢ ⊕ pᵢ) over the tensor's 16- or 32-bit words, with the position
    spread over 32 bits, pᵢ = (i·0x9E3779B9) mod 2³². An integer sum, so it
    does not depend on the order of the reduction (eager, traced or
    XLA-compiled, any device), with no overflow below 2³¹ words. A change of
    one element always changes it (⊕ pᵢ is a bijection); exchanging two
    elements changes it too unless their bits and positions happen to
    cancel. Few operations, since it is traced once for every variable.
    """
    value = ops.reshape(ops.convert_to_tensor(value), (-1,))
    words = ops.cast(ops.view(value, _WORD_DTYPES[keras.backend.standardize_dtype(value.dtype)]), "int64")
    positions = ops.bitwise_and(ops.arange(ops.shape(words)[0], dtype="int64") * 0x9E3779B9, MASK32)
    return ops.sum(ops.bitwise_xor(words, positions))
