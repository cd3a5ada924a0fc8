"""Parallel experiment batches: ``ledger.parallel.run_experiments`` (joblib, Dask, Ray).

A thin door onto :mod:`ledger.adapters.parallel` (joblib is imported only when used).
"""

from ledger.adapters.parallel import ExperimentResult, run_experiments

__all__ = ["ExperimentResult", "run_experiments"]
