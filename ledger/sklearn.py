"""scikit-learn integration: ``log_search``, ``autolog``/``disable`` and evaluation helpers.

A thin door onto :mod:`ledger.adapters.sklearn` (scikit-learn is imported only when used).
"""

from ledger.adapters.sklearn import *  # noqa: F403
from ledger.adapters.sklearn import __all__  # noqa: F401
