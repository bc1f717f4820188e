"""Every Numba kernel in simdist caches its compilation on disk (a second run does not recompile)."""

import importlib
import pkgutil
import subprocess
import sys
import textwrap

from numba.core.registry import CPUDispatcher

import simdist


def _dispatchers():
    found = {}
    for info in pkgutil.walk_packages(simdist.__path__, "simdist."):
        if info.name.startswith("simdist.cli") or info.name == "simdist.__main__":
            continue
        mod = importlib.import_module(info.name)
        for name, obj in vars(mod).items():
            if isinstance(obj, CPUDispatcher) and obj.__module__ == info.name:
                found[f"{info.name}.{name}"] = obj
    return found


def test_every_kernel_has_cache_enabled():
    found = _dispatchers()
    assert len(found) > 20, sorted(found)
    uncached = sorted(k for k, f in found.items() if type(f._cache).__name__ != "FunctionCache")
    assert not uncached, f"njit without cache=True: {uncached}"


def test_second_process_loads_from_cache(tmp_path):
    """Run a compress/decompress twice in fresh processes; the second must not compile anything."""
    script = textwrap.dedent(
        """
        import numpy as np
        from simdist import compressors
        from simdist.kernels import qsgd
        c = compressors.make("qsgd", s=4)
        x = np.linspace(-1, 1, 100).astype(np.float32)
        c.decompress(c.compress(x, np.random.default_rng(0)))
        from numba.core.registry import CPUDispatcher
        import simdist.kernels.qsgd as m
        ks = [f for f in vars(m).values() if isinstance(f, CPUDispatcher) and f.signatures]
        hits = sum(sum(f.stats.cache_hits.values()) for f in ks)
        misses = sum(sum(f.stats.cache_misses.values()) for f in ks)
        print(hits, misses)
        """
    )
    env_cache = {"NUMBA_CACHE_DIR": str(tmp_path)}
    import os

    env = {**os.environ, **env_cache}
    subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True)
    out = subprocess.run([sys.executable, "-c", script], env=env, check=True, capture_output=True, text=True).stdout
    hits, misses = map(int, out.split())
    assert hits > 0 and misses == 0, (hits, misses)
