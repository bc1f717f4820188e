"""Every registered compressor (and representative configurations) passes the conformance kit."""

import numpy as np
import pytest

from simdist import compressors, testing
from simdist.compressors import registry

#: Representative configurations per built-in compressor (d = 257 in the kit: odd on purpose).
CONFIGS = {
    "identity": [{}],
    "fp16": [{}],
    "qsgd": [{"s": 4}, {"s": 16, "bucket": 64}, {"s": 1, "norm": "max"}, {"s": 7, "bucket": 100, "encoding": "fixed"}],
    "nuqsgd": [{"s": 4}, {"s": 3, "bucket": 64}],
    "terngrad": [{}, {"clip": 2.5, "bucket": 64}],
    "onebit": [{}, {"bucket": 64}],
    "sign": [{}, {"scaled": False}, {"bucket": 100}],
    "topk": [{"k": 10}, {"ratio": 0.5}, {"k": 257}],
    "randk": [{"k": 10}, {"ratio": 0.3, "scaled": True}],
    "threshold": [{"tau": 0.5}],
    "chain": [{"stages": [{"name": "topk", "ratio": 0.1}, {"name": "qsgd", "s": 4}]}],
}


def test_every_builtin_is_registered():
    assert set(registry._BUILTIN) <= set(compressors.available())
    assert set(CONFIGS) == set(registry._BUILTIN)


CASES = [(name, cfg) for name, cfgs in CONFIGS.items() for cfg in cfgs]


@pytest.mark.parametrize("name,cfg", CASES, ids=[f"{n}-{i}" for i, (n, _) in enumerate(CASES)])
def test_conformance(name, cfg):
    testing.check_compressor(compressors.make(name, **cfg))


def test_make_forms_and_registry_errors():
    c = compressors.make("identity")
    assert compressors.make({"name": "identity"}) == c
    assert compressors.make(c) is c
    with pytest.raises(ValueError, match="unknown compressor 'nope'"):
        compressors.make("nope")
    with pytest.raises(ValueError, match="unknown parameter"):
        compressors.make("identity", s=3)
    with pytest.raises(ValueError, match="already registered"):

        @compressors.register
        class Clash(compressors.Compressor):  # noqa: D401 - deliberately a duplicate name
            name = "identity"

            def _encode_batch(self, X, rng):  # pragma: no cover
                raise NotImplementedError

            def _decode_batch(self, buffer, offsets, d, dtype, keys):  # pragma: no cover
                raise NotImplementedError


def test_kit_catches_a_broken_compressor():
    """The kit itself must fail on a compressor that lies about its size or its bytes."""
    from dataclasses import dataclass

    from simdist.compressors.identity import Identity

    @dataclass(frozen=True)
    class Liar(Identity):
        name = "liar-test"

        def _encode_batch(self, X, rng):
            buffer, offsets, nbits, keys = super()._encode_batch(X, rng)
            return buffer, offsets, nbits - 1, keys  # claims one bit less than it wrote

    with pytest.raises(Exception):
        testing.check_roundtrip(Liar(), np.ones(8, np.float32))
