"""Integer hashing in 32-bit unsigned `keras.ops`, the same bits on every backend.

MurmurHash3's 32-bit finalizer (AM2-SGD's point index) is a bijection of
32-bit integers with full avalanche; `fingerprint` (whether a model variable
was changed from outside) is a sum of words. Both are computed in uint32,
whose products and sums wrap modulo 2³² on every backend (TensorFlow eagerly,
in graphs and under XLA; JAX, which has no 64-bit integers by default), so
they give the same bits on every device, replica and backend.
"""

import keras
from keras import ops

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2³²/φ: spreads consecutive integers over 32 bits


def _uint32(value):
    """A Python integer in [0, 2³²) or an integer tensor as uint32 (wrapping)."""
    if isinstance(value, int):
        return ops.convert_to_tensor(value, dtype="uint32")
    return ops.cast(value, "uint32")


def as_int32_bits(value):
    """A Python integer in [0, 2³²) as the int32 with the same bits."""
    return value - 2**32 if value >= 2**31 else value


def finalize32(h):
    """MurmurHash3's fmix32 of uint32 values."""
    h = ops.bitwise_xor(h, ops.right_shift(h, _uint32(16)))
    h = ops.multiply(h, _uint32(0x85EBCA6B))
    h = ops.bitwise_xor(h, ops.right_shift(h, _uint32(13)))
    h = ops.multiply(h, _uint32(0xC2B2AE35))
    return ops.bitwise_xor(h, ops.right_shift(h, _uint32(16)))


def _low_and_high_words(step):
    """(k mod 2³², ⌊k / 2³²⌋) of a non-negative integer tensor k, as uint32."""
    step = ops.convert_to_tensor(step)
    if keras.backend.standardize_dtype(step.dtype) in ("int64", "uint64"):
        low = ops.cast(ops.bitwise_and(step, MASK32), "uint32")
        return low, ops.cast(ops.right_shift(step, 32), "uint32")
    return ops.cast(step, "uint32"), _uint32(0)


def point_index(seed, step, modulus):
    """jₖ = F(F(F(seed ⊕ 0x9E3779B9) ⊕ (k mod 2³²)) ⊕ ⌊k / 2³²⌋) mod `modulus`, int32.

    F is MurmurHash3's 32-bit finalizer; `seed` is in [0, 2³²), `step` k ≥ 0.
    A function of (seed, k) alone: the same on every replica, worker, device
    and backend, and reproducible.
    """
    low, high = _low_and_high_words(step)
    h = finalize32(ops.bitwise_xor(_uint32(seed), _uint32(_GOLDEN)))
    h = finalize32(ops.bitwise_xor(h, low))
    h = finalize32(ops.bitwise_xor(h, high))
    return ops.cast(ops.mod(h, _uint32(modulus)), "int32")


# The unsigned view of each float dtype (float64 as two 32-bit words).
_WORD_DTYPES = {"float16": "uint16", "bfloat16": "uint16", "float32": "uint32", "float64": "uint32"}


def fingerprint(value, dtype):
    """A digest of a float tensor's exact bits at their positions, as `dtype`.

    Σᵢ (wordᵢ ⊕ pᵢ) mod 2³² over the tensor's 16- or 32-bit words, with the
    position spread over 32 bits, pᵢ = (i·0x9E3779B9) mod 2³². A sum modulo
    2³², so it does not depend on the order of the reduction (eager, traced
    or XLA-compiled, any device). A change of one element always changes it
    (⊕ pᵢ is a bijection); exchanging two elements changes it too unless
    their bits and positions happen to cancel. Few operations, since it is
    traced once for every variable. Returned cast to the integer `dtype` of
    the state that records it (the same cast on both sides of a comparison).
    """
    value = ops.reshape(ops.convert_to_tensor(value), (-1,))
    word_dtype = _WORD_DTYPES[keras.backend.standardize_dtype(value.dtype)]
    words = ops.cast(ops.reshape(ops.view(value, word_dtype), (-1,)), "uint32")
    positions = ops.multiply(
        ops.cast(ops.arange(ops.shape(words)[0], dtype="int32"), "uint32"), _uint32(_GOLDEN)
    )
    return ops.cast(ops.sum(ops.bitwise_xor(words, positions)), dtype)
