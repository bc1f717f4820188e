"""Theory layer of simdist: every statement it checks as a plain function of its parameters.

Modules (see ``/work/shared/THEORY.md`` for the statements and how sure we are of each):

* :mod:`analysis.qsgd` -- QSGD (Alistarh et al., NeurIPS 2017): Lemma 3.1, Theorems 3.2, 3.4, 3.5.
* :mod:`analysis.quantizers` -- NUQSGD and TernGrad variance identities and bounds.
* :mod:`analysis.sparsification` -- k-contraction, top-k / rand-k errors, scaled sign, EF-SGD and
  Mem-SGD rates, top-k compression ratio.
* :mod:`analysis.sgd` -- the SGD bound of Bubeck (2015) Thm 6.3 and the parallel iteration count.
* :mod:`analysis.lower_bounds` -- Tsitsiklis-Luo, Omega(d/B), Safaryan-Shulgin-Richtarik.
* :mod:`analysis.collectives` -- alpha-beta costs of ring, recursive doubling, Rabenseifner and
  allgather (Thakur-Rabenseifner-Gropp 2005), and the SparCML sparse allreduce forms.
* :mod:`analysis.convergence_parallel` -- exact variance of the engine's averaged gradient under
  partitioned sampling, and the exact SGD suboptimality of mean estimation (issue 3, items 5a-5b).
* :mod:`analysis.convergence_compressed` -- steps-to-target, paired one-sided mean tests used by the
  compressed-convergence reproductions (items 5c-5e).
* :mod:`analysis.montecarlo` -- Monte-Carlo estimators with confidence intervals and :class:`Verdict`.
* :mod:`analysis.checks` -- :func:`check_compressor`: every statement that applies to a compressor.

Every function takes plain numbers or float arrays, returns floats, and raises ``ValueError``
/ ``TypeError`` naming the parameter and the allowed range. Markers in docstrings follow
THEORY.md: [V] read in the paper, [M] standard form (constants not verified), [D] exact identity.
"""

__all__ = [
    "qsgd", "quantizers", "sparsification", "sgd", "lower_bounds", "collectives",
    "convergence_parallel", "convergence_compressed", "montecarlo", "checks",
]
