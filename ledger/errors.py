"""Every error the library raises on purpose derives from :class:`LedgerError`.

The CLI turns a ``LedgerError`` into a one-line ``Error: ...`` and exit code 1, so each
message names the bad value and what is allowed.
"""

from __future__ import annotations


class LedgerError(Exception):
    """Base class of all ledger errors."""


class ConfigError(LedgerError):
    """The store configuration, an environment variable or an option value is invalid."""


class StoreError(LedgerError):
    """The store cannot be read or written (missing, unwritable, corrupt)."""


class LeaseLostError(StoreError):
    """This process no longer holds an object store's lifecycle lease (see ledger.lease)."""


class InvalidKeyError(LedgerError, ValueError):
    """A metric, param or tag key is empty, too long or not a string."""


class InvalidValueError(LedgerError, TypeError):
    """A logged value has the wrong type (e.g. a string passed as a metric value)."""


class ParamConflictError(LedgerError, ValueError):
    """A param was logged again within a run with a different value (MLflow semantics)."""


class RunNotFoundError(LedgerError, LookupError):
    """No run matches the given id, prefix or name."""


class AmbiguousRunError(LedgerError, LookupError):
    """A run id prefix or name matches more than one run."""


class RunStateError(LedgerError):
    """The operation does not fit the run's state (e.g. logging to an ended run)."""


class NoActiveRunError(RunStateError):
    """A module-level logging function was called with no active run."""


class QueryError(LedgerError):
    """A SQL query failed, or tried to do something other than read."""


class AdapterError(LedgerError, ValueError):
    """A foreign object (an Optuna study, a scikit-learn search) cannot be logged as given."""


class AnalysisError(LedgerError):
    """An analysis cannot be computed from the runs given (e.g. too few usable runs)."""
