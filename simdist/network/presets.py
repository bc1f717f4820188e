"""Named alpha-beta presets for real fabrics, each with where its numbers come from.

How the numbers are set:

* **beta** = 1 / (bytes per second of the line rate): a link of R Gb/s moves R/8 GB/s, so
  ``beta = 8 / (R * 1e9)`` s/byte. This is the data rate after line coding (Ethernet and
  InfiniBand EDR/HDR use 64b/66b, whose overhead is already outside the quoted rates); protocol
  headers, PCIe and software are ignored, so beta is optimistic (a lower bound on real per-byte time).
* **alpha** = one-way small-message latency as seen by an application (MPI ping-pong: half the
  round trip). Sources are cited per preset; where a value is an assumption it says so.
* **gamma** = ``1 / (5 GB/s)`` = 2e-10 s/byte for every preset (:data:`CPU_REDUCE_GAMMA`): the
  throughput of one CPU core summing two float32 streams into a third, a memory-bound loop
  (12 bytes moved per 4 bytes reduced at roughly 15-20 GB/s of single-core DRAM bandwidth gives
  about 5 GB/s of reduced data). An assumption of order of magnitude, not a measurement; the
  ``nvlink`` preset uses it too, although a GPU reduces far faster (set ``gamma`` explicitly
  with ``make("nvlink", gamma=...)`` for GPU studies).

Presets (``available()``):

=========  =============  ===========  ============================================================
name       alpha (s)      beta (s/B)   source
=========  =============  ===========  ============================================================
10gbe      20e-6          8.0e-10      10 Gb/s line rate; 20 us TCP end-to-end latency measured by
                                       Hurwitz and Feng (Hot Interconnects 2003) on 10GbE.
25gbe      10e-6          3.2e-10      25 Gb/s line rate; alpha is an assumption (kernel TCP
                                       latency on modern 25 GbE NICs is of order 10 us).
100gbe     5e-6           8.0e-11      100 Gb/s line rate; alpha is an assumption (between kernel
                                       TCP, ~10 us, and RoCE/kernel-bypass, ~1-2 us).
ib-edr     1.0e-6         8.0e-11      InfiniBand EDR 4x: 100 Gb/s data rate; alpha an assumption
                                       of MPI-level latency (~1 us) over the sub-microsecond
                                       adapter latency Mellanox quotes for ConnectX-4/5.
ib-hdr     0.6e-6         4.0e-11      InfiniBand HDR 4x: 200 Gb/s; alpha = the "sub-600 ns"
                                       latency of the ConnectX-6 user manual (NVIDIA/Mellanox);
                                       MPI adds a little on top.
aries      1.3e-6         1.0e-10      Cray Aries (XC30/XC40/XC50, e.g. CSCS Piz Daint):
                                       ~10 GB/s per node per direction (NIC on PCIe Gen3 x16;
                                       Alverson et al., "Cray XC Series Network", WP-Aries01-1112,
                                       2012); alpha is an assumption of order of the ~1-1.5 us
                                       MPI latencies reported for Aries (not verified here).
nvlink     5e-6           6.67e-12     NVLink 2 through NVSwitch (DGX-2, V100 SXM3): 6 links x
                                       25 GB/s = 150 GB/s per GPU per direction (NVIDIA V100
                                       architecture; Dell measured 143.7 GB/s aggregate on V100
                                       SXM2 with p2pBandwidthLatencyTest); alpha is an assumption
                                       of the per-transfer software overhead (a CUDA peer copy or
                                       a NCCL step costs microseconds; see Li et al., "Evaluating
                                       Modern GPU Interconnect", IEEE TPDS 2020, for measurements).
nvlink3    5e-6           3.33e-12     NVLink 3 through NVSwitch (A100 SXM4): 12 links x 25 GB/s =
                                       300 GB/s per direction (NVIDIA A100 datasheet); alpha as
                                       for nvlink (assumption).
ec2-10g    50e-6          8.0e-10      A commodity cloud 10 Gb/s network: 10 Gb/s line rate;
                                       alpha = half of the 92-100 us round trip measured between
                                       EC2 c3 instances in a placement group (Scalable Logic,
                                       "Enhanced Networking in the AWS Cloud - Part 2", 2014).
=========  =============  ===========  ============================================================

None of these models contention, topology or congestion: every rank is assumed to get the full
link to its peer in each round.

Example:
    >>> from simdist.network import presets
    >>> net = presets.make("10gbe")
    >>> net.alpha, net.beta, net.name
    (2e-05, 8e-10, '10gbe')
    >>> presets.make("aries", gamma=0.0).gamma
    0.0

References:
    J. Hurwitz, W. Feng, "Initial End-to-End Performance Evaluation of 10-Gigabit Ethernet",
    Hot Interconnects 11, 2003. B. Alverson, E. Froese, L. Kaplan, D. Roweth, "Cray XC Series
    Network", Cray white paper WP-Aries01-1112, 2012. NVIDIA ConnectX-6 VPI user manual
    ("sub-600ns latency"). A. Li et al., "Evaluating Modern GPU Interconnect: PCIe, NVLink,
    NV-SLI, NVSwitch and GPUDirect", IEEE TPDS 31(1), 2020 (arXiv:1903.04611).
"""

from __future__ import annotations

from .alphabeta import AlphaBeta

__all__ = ["CPU_REDUCE_GAMMA", "register", "make", "available", "describe"]

#: Seconds per byte reduced by one CPU core: 1 / (5 GB/s) (an assumption; see the module docstring).
CPU_REDUCE_GAMMA = 1.0 / 5e9

_PRESETS: dict[str, tuple[AlphaBeta, str]] = {}


def _line_rate(gbit_per_s: float) -> float:
    """beta in s/byte for a line rate in Gb/s (1e9 bits per second)."""
    return 8.0 / (gbit_per_s * 1e9)


def register(model: AlphaBeta, source: str = "") -> AlphaBeta:
    """Add ``model`` under ``model.name``; a duplicate or empty name is a ValueError.

    Args:
        model: the preset (its ``name`` is the key).
        source: where its numbers come from (shown by :func:`describe`).

    Returns:
        ``model``.
    """
    if not isinstance(model, AlphaBeta):
        raise TypeError(f"model must be an AlphaBeta, got {type(model).__name__}")
    if not model.name:
        raise ValueError("a network preset needs a non-empty name")
    if model.name in _PRESETS:
        raise ValueError(f"a network preset named {model.name!r} is already registered")
    _PRESETS[model.name] = (model, str(source))
    return model


def available() -> list[str]:
    """Sorted names of the network presets."""
    return sorted(_PRESETS)


def make(name: str, **overrides) -> AlphaBeta:
    """The preset ``name``, optionally with some parameters changed (``make("aries", gamma=0.0)``).

    Raises:
        ValueError: unknown preset (the message lists the available ones) or a bad override.
        TypeError: ``name`` is not a string.
    """
    if not isinstance(name, str):
        raise TypeError(f"network preset name must be a string, got {type(name).__name__} {name!r}")
    if name not in _PRESETS:
        raise ValueError(f"unknown network preset {name!r}; available: {', '.join(available())}")
    model = _PRESETS[name][0]
    if overrides:
        unknown = set(overrides) - {"alpha", "beta", "gamma"}
        if unknown:
            raise ValueError(f"unknown network parameter(s) {sorted(unknown)}; allowed: ['alpha', 'beta', 'gamma']")
        model = model.replace(**overrides)
    return model


def describe(name: str) -> str:
    """Where the preset's numbers come from."""
    make(name)
    return _PRESETS[name][1]


_G = CPU_REDUCE_GAMMA
register(AlphaBeta(20e-6, _line_rate(10), _G, "10gbe"),
         "10 Gb/s line rate; alpha = 20 us TCP end-to-end latency (Hurwitz & Feng, Hot Interconnects 2003).")
register(AlphaBeta(10e-6, _line_rate(25), _G, "25gbe"),
         "25 Gb/s line rate; alpha = 10 us, an assumption (kernel TCP latency on 25 GbE).")
register(AlphaBeta(5e-6, _line_rate(100), _G, "100gbe"),
         "100 Gb/s line rate; alpha = 5 us, an assumption (between kernel TCP and RoCE).")
register(AlphaBeta(1.0e-6, _line_rate(100), _G, "ib-edr"),
         "InfiniBand EDR 4x, 100 Gb/s; alpha = 1 us, an assumption of MPI-level latency.")
register(AlphaBeta(0.6e-6, _line_rate(200), _G, "ib-hdr"),
         "InfiniBand HDR 4x, 200 Gb/s; alpha = 0.6 us (ConnectX-6 'sub-600 ns' latency, vendor).")
register(AlphaBeta(1.3e-6, 1.0 / 10e9, _G, "aries"),
         "Cray Aries (Piz Daint): ~10 GB/s per node per direction (Alverson et al. 2012); "
         "alpha = 1.3 us, an assumption of order of reported MPI latencies.")
register(AlphaBeta(5e-6, 1.0 / 150e9, _G, "nvlink"),
         "NVLink 2 via NVSwitch (V100): 150 GB/s per direction; alpha = 5 us, an assumption.")
register(AlphaBeta(5e-6, 1.0 / 300e9, _G, "nvlink3"),
         "NVLink 3 via NVSwitch (A100): 300 GB/s per direction; alpha = 5 us, an assumption.")
register(AlphaBeta(50e-6, _line_rate(10), _G, "ec2-10g"),
         "Cloud 10 Gb/s: line rate; alpha = 50 us, half the 92-100 us EC2 c3 round trip (Scalable Logic, 2014).")
del _G
