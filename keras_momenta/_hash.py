"""Integer hashing in 32-bit unsigned arithmetic, the same bits on every backend.

MurmurHash3's 32-bit finalizer (AM2-SGD's point index) is a bijection of
32-bit integers with full avalanche; `fingerprint` (whether a model variable
was changed from outside) is a sum of words. Both are computed modulo 2³²:
in uint32 where its products and sums wrap (TensorFlow eagerly, in graphs and
under XLA; JAX, which has no 64-bit integers by default), and in int64 with
masks where Keras keeps uint32 values in int64 (PyTorch), so they give the
same bits on every device, replica and backend.
"""

import keras
from keras import ops

MASK32 = 0xFFFFFFFF
_GOLDEN = 0x9E3779B9  # 2³²/φ: spreads consecutive integers over 32 bits


def _wrapping_uint32():
    """Whether this backend's uint32 wraps modulo 2³² (PyTorch's keeps it in int64)."""
    return keras.backend.backend() != "torch"


def _word_dtype():
    return "uint32" if _wrapping_uint32() else "int64"


def _word(value):
    """A Python integer or an integer tensor modulo 2³², as a 32-bit word."""
    if isinstance(value, int):
        return ops.convert_to_tensor(value & MASK32, dtype=_word_dtype())
    word = ops.cast(value, _word_dtype())
    return word if _wrapping_uint32() else ops.bitwise_and(word, MASK32)


def _multiply(word, constant):
    """(word · constant) mod 2³² for a Python integer constant < 2³²."""
    if _wrapping_uint32():
        return ops.multiply(word, _word(constant))
    # In int64, in 16-bit halves of the constant: every product stays below 2⁴⁹.
    low, high = constant & 0xFFFF, constant >> 16
    high_part = ops.left_shift(ops.bitwise_and(word * high, 0xFFFF), 16)
    return ops.bitwise_and(word * low + high_part, MASK32)


def as_int32_bits(value):
    """A Python integer in [0, 2³²) as the int32 with the same bits."""
    return value - 2**32 if value >= 2**31 else value


def finalize32(h):
    """MurmurHash3's fmix32 of 32-bit words."""
    h = ops.bitwise_xor(h, ops.right_shift(h, _word(16)))
    h = _multiply(h, 0x85EBCA6B)
    h = ops.bitwise_xor(h, ops.right_shift(h, _word(13)))
    h = _multiply(h, 0xC2B2AE35)
    return ops.bitwise_xor(h, ops.right_shift(h, _word(16)))


def _low_and_high_words(step):
    """(k mod 2³², ⌊k / 2³²⌋) of a non-negative integer tensor k, as words."""
    step = ops.convert_to_tensor(step)
    if keras.backend.standardize_dtype(step.dtype) in ("int64", "uint64"):
        return _word(ops.bitwise_and(step, MASK32)), _word(ops.right_shift(step, 32))
    return _word(step), _word(0)


def point_index(seed, step, modulus):
    """jₖ = F(F(F(seed ⊕ 0x9E3779B9) ⊕ (k mod 2³²)) ⊕ ⌊k / 2³²⌋) mod `modulus`, int32.

    F is MurmurHash3's 32-bit finalizer; `seed` is in [0, 2³²) (or the int32
    with its bits), `step` k ≥ 0. A function of (seed, k) alone: the same on
    every replica, worker, device and backend, and reproducible.
    """
    low, high = _low_and_high_words(step)
    h = finalize32(ops.bitwise_xor(_word(seed), _word(_GOLDEN)))
    h = finalize32(ops.bitwise_xor(h, low))
    h = finalize32(ops.bitwise_xor(h, high))
    return ops.cast(ops.mod(h, _word(modulus)), "int32")


# The integer view of each float dtype (float64 as two 32-bit words), and the
# mask that makes a signed view's word unsigned.
_VIEWS = {
    "float16": ("int16", 0xFFFF),
    "bfloat16": ("int16", 0xFFFF),
    "float32": ("int32", MASK32),
    "float64": ("int32", MASK32),
}


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
    view, mask = _VIEWS[keras.backend.standardize_dtype(value.dtype)]
    if _wrapping_uint32():
        view = "u" + view
    words = ops.reshape(ops.view(value, view), (-1,))
    words = _word(words) if _wrapping_uint32() else ops.bitwise_and(ops.cast(words, "int64"), mask)
    positions = _multiply(_word(ops.arange(ops.shape(words)[0], dtype="int32")), _GOLDEN)
    total = ops.sum(ops.bitwise_xor(words, positions))
    if not _wrapping_uint32():
        total = ops.bitwise_and(total, MASK32)
    return ops.cast(total, dtype)
