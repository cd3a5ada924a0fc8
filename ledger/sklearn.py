"""scikit-learn integration: ``log_search``, ``autolog``/``disable`` and evaluation helpers.

A thin door onto :mod:`ledger.adapters.sklearn` (scikit-learn is imported only when used).
"""

from ledger.adapters.sklearn import (
    autolog,
    disable,
    flatten_params,
    log_classification_report,
    log_confusion_matrix,
    log_feature_importances,
    log_learning_curve,
    log_model,
    log_search,
)

__all__ = [
    "autolog",
    "disable",
    "flatten_params",
    "log_classification_report",
    "log_confusion_matrix",
    "log_feature_importances",
    "log_learning_curve",
    "log_model",
    "log_search",
]
