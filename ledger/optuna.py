"""Optuna integration: ``ledger.optuna.LedgerCallback`` and ``ledger.optuna.track_study``.

A thin door onto :mod:`ledger.adapters.optuna` (optuna is imported only when used).
"""

from ledger.adapters.optuna import LedgerCallback, study_run_id, track_study, trial_run_id

__all__ = ["LedgerCallback", "study_run_id", "track_study", "trial_run_id"]
