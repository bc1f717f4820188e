"""Which compressors have a device codec, and the device side of ``compress`` / ``decompress``.

:class:`~simdist.compressors.base.Compressor` sends a device array (see
:func:`simdist.gpu.backend.is_device_array`) here instead of to its NumPy kernels; the data stays
on the device and the messages are the CPU path's exact bytes.

Registry (a dict from compressor name to ``(predicate, codec)`` entries, first match wins; no
if/elif chain). A codec is any object with

    encode(compressor, X, keys) -> (buffer, offsets, nbits)     # X: (n, d) device array
    decode(compressor, buffer, offsets, d, dtype) -> Y          # or (Y, nbits), see below

where ``keys`` is ``simdist.rng.draw_keys(rng, n)`` for a randomized compressor (``needs_rng``)
and None otherwise, ``buffer`` is a uint8 device array and ``offsets`` (n+1) / ``nbits`` (n) are
host arrays. A decoder of a variable-length format returns ``(Y, nbits)`` (the bits each row's
message consumed); a fixed-width one returns Y and its codec gives ``rowbits(compressor, d)``.

Adding a codec is one :func:`register` call. For functions of the shapes of
:mod:`simdist.gpu.codecs` (``compress_x(X, [keys,] **params)``, ``decompress_x(buffer, offsets, d,
dtype, **params)``), wrap them in a :class:`FunctionCodec`, e.g. for a module
``simdist/gpu/codecs_terngrad.py``::

    from . import codecs_terngrad as ct
    register("terngrad", FunctionCodec(
        ct.compress_terngrad, ct.decompress_terngrad,
        params=lambda c: {"bucket": c.bucket, "clip": c.clip},        # encode keyword arguments
        decode_params=lambda c: {"bucket": c.bucket},                  # default: params
        rowbits=lambda c, d: terngrad_nbits(d, c._b(d))))              # fixed width (else decode
                                                                       # returns (Y, nbits))
    register("qsgd", FunctionCodec(...), when=lambda c: c.encoding == "elias", note="encoding='elias'")

A compressor without a matching codec given a device array raises TypeError naming the
compressor and listing :func:`available` (an explicit error, never a silent host round trip).

Example (the round trip runs on a GPU, or anywhere with ``NUMBA_ENABLE_CUDASIM=1``):
    >>> import numpy as np
    >>> from numba import cuda
    >>> from simdist.compressors.sign import Sign
    >>> "sign" in available() and codec_for(Sign()) is not None
    True
    >>> x = np.array([1.0, -3.0, 0.0, 2.0], np.float32)
    >>> p = Sign().compress(cuda.to_device(x) if cuda.is_available() else x)
    >>> p.to_bytes() == Sign().compress(x).to_bytes()
    True

References:
    Wire formats: :mod:`simdist.compressors.sign`, :mod:`simdist.compressors.qsgd`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Callable

import numpy as np

from .._validate import NonFiniteInput, check_finite
from ..errors import DecodeError
from ..rng import draw_keys
from . import arrays, codecs, codecs_onebit, codecs_qsgd_elias, codecs_terngrad, codecs_topk
from .backend import to_host

__all__ = ["FunctionCodec", "register", "codec_for", "require_codec", "available", "compress", "decompress"]

#: name -> [(predicate or None, note, codec)], in registration order
_CODECS: dict[str, list[tuple[Callable | None, str, Any]]] = {}


@dataclass(frozen=True)
class FunctionCodec:
    """A device codec from a compress and a decompress function of the :mod:`simdist.gpu.codecs` shapes.

    Args:
        compress: ``compress(X, **params)`` or, for randomized compressors, ``compress(X, keys, **params)``
            returning ``(buffer, offsets, nbits)``.
        decompress: ``decompress(buffer, offsets, d, dtype, **decode_params)`` returning Y or ``(Y, nbits)``.
        params: compressor -> the encoder's keyword arguments.
        decode_params: compressor -> the decoder's keyword arguments (default: ``params``).
        rowbits: ``(compressor, d) -> bits of one message`` for fixed-width formats (None when the
            decoder returns ``(Y, nbits)``; without either, the declared lengths are trusted after the
            decoder's own framing check).
    """

    compress: Callable
    decompress: Callable
    params: Callable
    decode_params: Callable | None = None
    rowbits: Callable | None = None

    def encode(self, compressor, X, keys):
        args = (X,) if keys is None else (X, keys)
        return self.compress(*args, **self.params(compressor))

    def decode(self, compressor, buffer, offsets, d, dtype):
        kw = (self.decode_params or self.params)(compressor)
        Y = self.decompress(buffer, offsets, d, dtype, **kw)
        if isinstance(Y, tuple) or self.rowbits is None:
            return Y
        return Y, np.full(offsets.shape[0] - 1, self.rowbits(compressor, d), np.int64)


def register(name: str, codec, *, when: Callable | None = None, note: str = "") -> None:
    """Add ``codec`` for the compressor registered as ``name`` (for configs where ``when(c)`` is true).

    Args:
        name: the compressor's registry name.
        codec: an object with ``encode`` and ``decode`` (see the module docstring).
        when: optional predicate on the compressor's config; entries are tried in registration order.
        note: what ``when`` requires, for error messages (e.g. ``"encoding='fixed'"``).
    """
    if not (callable(getattr(codec, "encode", None)) and callable(getattr(codec, "decode", None))):
        raise TypeError(f"codec must have encode() and decode() methods, got {type(codec).__name__}")
    _CODECS.setdefault(name, []).append((when, note, codec))


def codec_for(compressor):
    """The device codec of ``compressor`` (its name and config), or None."""
    for when, _, codec in _CODECS.get(compressor.name, ()):
        if when is None or when(compressor):
            return codec
    return None


def available() -> list[str]:
    """The compressors with device codecs, with their config conditions (``"qsgd (encoding='fixed')"``)."""
    return [f"{name} ({note})" if note else name for name, entries in _CODECS.items() for _, note, _ in entries]


def require_codec(compressor):
    """:func:`codec_for`, or TypeError naming the compressor and the ones that have device codecs."""
    codec = codec_for(compressor)
    if codec is None:
        raise TypeError(
            f"{compressor} has no GPU codec, so it cannot compress or decode device arrays; compressors with "
            f"GPU codecs: {', '.join(available())}. Pass a NumPy array (e.g. cupy.asnumpy(x)) to use the CPU path"
        )
    return codec


def compress(compressor, X, rng, name: str):
    """The device side of ``compress`` (``name="x"``, 1-D) and ``compress_batch`` (``name="X"``, 2-D).

    Returns:
        A :class:`~simdist.compressors.payload.PayloadBatch` whose buffer is a device array of X's kind.
    """
    from ..compressors.payload import PayloadBatch

    codec = require_codec(compressor)
    shape, dtype = arrays.check_device_array(name, X, 1 if name == "x" else 2)
    X2 = X.reshape(1, shape[0]) if len(shape) == 1 else X
    n, d = (1, shape[0]) if len(shape) == 1 else shape
    compressor._check_dim(d)
    compressor._check_rng(rng)
    keys = draw_keys(rng, n) if compressor.needs_rng else None
    try:
        buffer, offsets, nbits = codec.encode(compressor, X2, keys)
    except NonFiniteInput:
        check_finite(name, to_host(X2))  # the error naming x / X, its first bad flat index and count
        raise
    buffer = arrays.as_kind(buffer, X)
    return PayloadBatch(buffer, np.asarray(offsets, np.int64), np.asarray(nbits, np.int64), d, dtype,
                        compressor.name, None)


def decompress(compressor, batch, out=None, out_shape=None):
    """The device side of ``decompress_batch`` (and of ``decompress``, with ``out_shape=(dim,)``).

    Returns:
        The decoded rows as a device array of the buffer's kind (``out`` itself when given).

    Raises:
        DecodeError: malformed messages, declared lengths that disagree with the decoded ones,
            or non-zero padding bits (as the CPU path).
    """
    n = batch.offsets.shape[0] - 1
    shape = (n, batch.dim) if out_shape is None else tuple(out_shape)
    if out is not None:
        arrays.check_device_out("out", out, shape, batch.dtype)
    if compressor.needs_key and batch.keys is None:
        raise ValueError(f"{compressor.name} needs the shared key (key=...) to decode")
    codec = require_codec(compressor)
    got = codec.decode(compressor, batch.buffer, batch.offsets, int(batch.dim), np.dtype(batch.dtype))
    Y, nbits = got if isinstance(got, tuple) else (got, batch.nbits)
    nbits = np.asarray(nbits, np.int64)
    if not np.array_equal(nbits, batch.nbits):
        raise DecodeError(f"{compressor.name}: decoded length {nbits.tolist()} bits != declared "
                          f"{batch.nbits.tolist()}")
    compressor._check_framing(batch.offsets, nbits, arrays.last_bytes(batch.buffer, batch.offsets))
    Y = arrays.as_kind(Y, batch.buffer)
    if out is None:
        return Y if out_shape is None else Y.reshape(shape)
    arrays.copy_into(out, Y.reshape(shape))
    return out


# -- the built-in codecs; see the module docstring to add one ----------------------------------------


def _qsgd_rowbits(c, d: int) -> int:
    b = c._b(d)
    return 32 * -(-d // b) + d * c._width


register("sign", FunctionCodec(codecs.compress_sign, codecs.decompress_sign,
                               params=lambda c: {"scaled": c.scaled, "bucket": c.bucket},
                               rowbits=lambda c, d: c._nbits(d)))
register("qsgd", FunctionCodec(codecs.compress_qsgd_fixed, codecs.decompress_qsgd_fixed,
                               params=lambda c: {"s": c.s, "bucket": c.bucket, "norm": c.norm},
                               decode_params=lambda c: {"s": c.s, "bucket": c.bucket},
                               rowbits=_qsgd_rowbits),
         when=lambda c: c.encoding == "fixed", note="encoding='fixed'")
register("qsgd", FunctionCodec(codecs_qsgd_elias.compress_qsgd_elias, codecs_qsgd_elias.decompress_qsgd_elias,
                               params=lambda c: {"s": c.s, "bucket": c.bucket, "norm": c.norm},
                               decode_params=lambda c: {"s": c.s, "bucket": c.bucket, "return_nbits": True}),
         when=lambda c: c.encoding == "elias", note="encoding='elias'")
register("topk", FunctionCodec(codecs_topk.compress_topk, codecs_topk.decompress_topk,
                               params=lambda c: {"k": c.k, "ratio": c.ratio},
                               decode_params=lambda c: {"k": c.k, "ratio": c.ratio, "return_nbits": True}))
register("terngrad", FunctionCodec(codecs_terngrad.compress_terngrad, codecs_terngrad.decompress_terngrad,
                                   params=lambda c: {"clip": c.clip, "bucket": c.bucket},
                                   decode_params=lambda c: {"bucket": c.bucket, "return_nbits": True}))
register("onebit", FunctionCodec(codecs_onebit.compress_onebit, codecs_onebit.decompress_onebit,
                                 params=lambda c: {"bucket": c.bucket},
                                 decode_params=lambda c: {"bucket": c.bucket, "return_nbits": True}))
