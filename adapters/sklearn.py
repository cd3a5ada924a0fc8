"""scikit-learn: searches as nested runs, ``autolog()``, and evaluation helpers.

    from ledger import sklearn as lsk

    search = GridSearchCV(SVC(), {"C": [0.1, 1, 10]}, cv=5).fit(X, y)
    lsk.log_search(search)                      # parent run + one child per candidate

    lsk.autolog()                               # every top-level fit becomes a run
    RandomForestClassifier().fit(X, y)
    lsk.disable()

    with ledger.start_run():
        lsk.log_confusion_matrix(y_test, model.predict(X_test))
        lsk.log_classification_report(y_test, model.predict(X_test))
        lsk.log_feature_importances(model, feature_names)
        lsk.log_learning_curve(model, X, y, cv=5)

Tables go in as JSON/CSV artifacts (and, where a number is useful in SQL, as metrics);
plots as PNG artifacts drawn with matplotlib's object API (no pyplot state, headless).
"""

from __future__ import annotations

import contextlib
import functools
import json
import logging
import math
import os
import tempfile
import threading
import time
from collections.abc import Callable, Sequence
from typing import Any

from ledger.adapters._record import MetricRow, record_run

from ledger.errors import AdapterError, NoActiveRunError
from ledger.ids import new_id
from ledger.run import MAX_VALUE_LENGTH, Run, active_run, new_run, param_text
from ledger.store import Store, open_store

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

log = logging.getLogger("ledger")

_PARAM_TEXT_LIMIT = 1000


def _target(run: Run | None) -> Run:
    run = run if run is not None else active_run()
    if run is None:
        raise NoActiveRunError(
            "No active run: pass run=... or call this inside `with ledger.start_run():`"
        )
    return run


def _param_value(value: Any) -> Any:
    """A param as the ledger keeps it: estimators by class name, long texts cut."""
    if hasattr(value, "get_params") and not isinstance(value, type):
        return type(value).__name__
    if callable(value) and not isinstance(value, (str, int, float, bool)):
        return getattr(value, "__name__", type(value).__name__)
    if hasattr(value, "tolist") and getattr(value, "ndim", 0) > 0:  # numpy arrays
        value = value.tolist()
    if isinstance(value, (list, tuple)) and any(hasattr(v, "get_params") for v in _walk(value)):
        return _short(repr(value))
    text, _ = param_text(value)
    if len(text) > _PARAM_TEXT_LIMIT:
        return _short(text)
    return value


def _walk(value: Any) -> list[Any]:
    items = []
    for item in value:
        if isinstance(item, (list, tuple)):
            items.extend(_walk(item))
        else:
            items.append(item)
    return items


def _short(text: str) -> str:
    return text if len(text) <= _PARAM_TEXT_LIMIT else text[: _PARAM_TEXT_LIMIT - 3] + "..."


def flatten_params(estimator: Any) -> dict[str, Any]:
    """``get_params(deep=True)`` as ledger params: nested keys ``step__param``, nested
    estimators by class name, values with their native types where they have one."""
    return {key: _param_value(value) for key, value in estimator.get_params(deep=True).items()}


def _figure(width: float = 6.0, height: float = 4.5) -> Any:
    from matplotlib.figure import Figure

    return Figure(figsize=(width, height), dpi=100, layout="tight")


# -- searches -------------------------------------------------------------------------------


def _scorer_names(search: Any) -> list[str]:
    results = search.cv_results_
    names = [key[len("mean_test_") :] for key in results if key.startswith("mean_test_")]
    return names or ["score"]


def _number(value: Any) -> float | None:
    try:
        number = float(value)
    except (TypeError, ValueError):
        return None
    return number


def log_search(
    search_cv: Any,
    run: Run | None = None,
    *,
    project: str | None = None,
    experiment: str | None = None,
    name: str | None = None,
    store: str | Store | None = None,
    log_model: bool = False,
) -> Run:
    """Log a fitted GridSearchCV / RandomizedSearchCV / Halving*SearchCV.

    The parent run (``run``, or a new run, a child of the active run if any) gets the
    search's settings as params (estimator, cv splits, scoring, refit, candidates), the
    best params as ``best_<param>`` params, and metrics ``best_score``, ``best_index``
    and ``refit_time_s``. Each row of ``cv_results_`` becomes a finished child run with
    the candidate's params and every numeric ``cv_results_`` column as a metric under its
    own name (``mean_test_<scorer>``, ``std_test_<scorer>``, ``rank_test_<scorer>``,
    ``mean_fit_time``, ``split0_test_score``, ...; Halving searches add ``iter`` and
    ``n_resources``). A candidate whose every fold failed (score NaN) is ``failed``.

    Returns the parent run; a run this function started is ended before it returns.

    Raises:
        AdapterError: ``search_cv`` is not fitted (has no ``cv_results_``).
    """
    if not hasattr(search_cv, "cv_results_"):
        raise AdapterError(f"{type(search_cv).__name__} is not fitted: it has no cv_results_")
    own = run is None
    if run is None:
        estimator_name = type(getattr(search_cv, "estimator", None)).__name__
        run = new_run(
            project,
            experiment,
            name or f"{type(search_cv).__name__}({estimator_name})",
            store=open_store(store) if store is not None else None,
            activate=False,
        )
    try:
        _log_search_into(search_cv, run, log_model=log_model)
    except BaseException as exc:
        if own:
            run.end("failed", message=f"{type(exc).__name__}: {exc}")
        raise
    if own:
        run.end("finished")
    return run


def _log_search_into(search: Any, run: Run, *, log_model: bool) -> None:
    results = search.cv_results_
    scorers = _scorer_names(search)
    n = len(results["params"])
    settings: dict[str, Any] = {
        "search": type(search).__name__,
        "estimator": type(getattr(search, "estimator", None)).__name__,
        "n_candidates": n,
        "n_splits": getattr(search, "n_splits_", None),
        "cv": _param_value(getattr(search, "cv", None)),
        "scoring": _param_value(getattr(search, "scoring", None)),
        "refit": _param_value(getattr(search, "refit", None)),
    }
    best_params = getattr(search, "best_params_", None) or {}
    settings.update({f"best_{key}": _param_value(v) for key, v in best_params.items()})
    run.log_params({k: v for k, v in settings.items() if v is not None})
    run.set_tags({"ledger.source": "sklearn", "sklearn.scorers": json.dumps(scorers)})
    summary: dict[str, float] = {}
    for attribute, key in (
        ("best_score_", "best_score"),
        ("best_index_", "best_index"),
        ("refit_time_", "refit_time_s"),
    ):
        value = _number(getattr(search, attribute, None))
        if value is not None:
            summary[key] = value
    if summary:
        run.log_metrics(summary)

    numeric = [
        key
        for key, column in results.items()
        if key != "params" and not key.startswith("param_") and _numeric_column(column)
    ]
    primary = f"mean_test_{scorers[0]}"
    n_splits = getattr(search, "n_splits_", None) or 1
    now = time.time()
    for index in range(n):
        metrics: list[MetricRow] = []
        for key in numeric:
            value = _number(results[key][index])
            if value is not None:
                metrics.append((key, value, 0, now))
        fit_s = sum(
            _number(results.get(key, [0] * n)[index]) or 0.0
            for key in ("mean_fit_time", "mean_score_time")
        )
        score = _number(results[primary][index]) if primary in results else None
        failed = score is not None and math.isnan(score)
        record_run(
            run.store,
            run_id=new_id(),
            project=run.project,
            experiment=run.experiment,
            name=f"candidate-{index}",
            parent_id=run.id,
            # The candidate's fits happened inside the search; its duration is the time
            # they took (mean fit + score time per split, times the splits).
            start_s=now - fit_s * n_splits,
            end_s=now,
            status="failed" if failed else "finished",
            message="every fold failed (error_score)" if failed else None,
            params={key: _param_value(v) for key, v in results["params"][index].items()},
            tags={"sklearn.candidate_index": index},
            metrics=metrics,
        )
    if log_model and hasattr(search, "best_estimator_"):
        _log_model_into(run, search.best_estimator_)


def _numeric_column(column: Any) -> bool:
    kind = getattr(getattr(column, "dtype", None), "kind", "")
    return kind in "biuf" and kind != ""


# -- models -----------------------------------------------------------------------------------


def log_model(model: Any, *, run: Run | None = None, artifact_path: str = "model") -> str:
    """Store a fitted model (joblib pickle) as artifact ``<artifact_path>/model.joblib``.

    Raises:
        NoActiveRunError: no ``run`` given and none active.
    """
    return _log_model_into(_target(run), model, artifact_path)


def _log_model_into(run: Run, model: Any, artifact_path: str = "model") -> str:
    import joblib

    with tempfile.TemporaryDirectory() as folder:
        path = os.path.join(folder, "model.joblib")
        joblib.dump(model, path)
        return run.log_artifact(path, artifact_path, kind="model")[0]


# -- autolog ----------------------------------------------------------------------------------

_FIT_METHODS = ("fit", "fit_transform", "fit_predict")


class _Autolog:
    def __init__(self) -> None:
        self.enabled = False
        self.options: dict[str, Any] = {}
        self.patched: list[tuple[type, str, Callable[..., Any]]] = []
        self.depth = 0
        self.lock = threading.Lock()
        self.warned = False


_state = _Autolog()


def autolog(
    *,
    log_models: bool = True,
    log_training_score: bool = True,
    log_search_children: bool = True,
    project: str | None = None,
    experiment: str | None = None,
    disable: bool = False,
) -> None:
    """Log every top-level ``fit`` (also ``fit_transform``/``fit_predict``) as a run.

    While active, fitting an estimator, pipeline or search starts a run (a child of the
    active run, if any) with the flattened ``get_params(deep=True)``, ``training_time_s``,
    the training score(s) (``training_score``; classifiers add accuracy, precision,
    recall and F1 (weighted), regressors R², MSE, RMSE, MAE), and the fitted model as
    artifact ``model/model.joblib``. A search also gets its candidates as child runs
    (:func:`log_search`). Fits nested in another fit (pipeline steps, search
    candidates, ensemble members) are not logged on their own. The estimator's
    behaviour and results do not change; logging failures become one warning.

    ``disable=True`` (or :func:`disable`) turns it off and restores the original methods.
    Estimator classes defined after this call are patched when they are created.
    """
    if disable:
        _disable()
        return
    _state.options = {
        "log_models": log_models,
        "log_training_score": log_training_score,
        "log_search_children": log_search_children,
        "project": project,
        "experiment": experiment,
    }
    if _state.enabled:
        return
    from sklearn.base import BaseEstimator

    for cls in _subclasses(BaseEstimator):
        _patch_class(cls)

    def _init_subclass(cls: type, **kwargs: Any) -> None:
        super(BaseEstimator, cls).__init_subclass__(**kwargs)
        _patch_class(cls)

    BaseEstimator.__init_subclass__ = classmethod(_init_subclass)
    _state.enabled = True


def disable() -> None:
    """Turn :func:`autolog` off: every patched method is restored."""
    _disable()


def _disable() -> None:
    if not _state.enabled:
        return
    from sklearn.base import BaseEstimator

    with contextlib.suppress(AttributeError):
        del BaseEstimator.__init_subclass__
    for cls, method, original in reversed(_state.patched):
        setattr(cls, method, original)
    _state.patched.clear()
    _state.enabled = False


def _subclasses(root: type) -> list[type]:
    seen: dict[type, None] = {}
    todo: list[type] = [root]
    while todo:
        cls = todo.pop()
        sub: type
        for sub in cls.__subclasses__():
            if sub not in seen:
                seen[sub] = None
                todo.append(sub)
    return list(seen)


def _patch_class(cls: type) -> None:
    for method in _FIT_METHODS:
        original = cls.__dict__.get(method)
        if original is None or getattr(original, "_ledger_autolog", False):
            continue
        if not callable(original):
            continue
        wrapper = _wrap(original, method)
        setattr(cls, method, wrapper)
        _state.patched.append((cls, method, original))


def _wrap(original: Callable[..., Any], method: str) -> Callable[..., Any]:
    @functools.wraps(original)
    def patched(self: Any, *args: Any, **kwargs: Any) -> Any:
        with _state.lock:
            top = _state.enabled and _state.depth == 0
            _state.depth += 1
        try:
            if not top:
                return original(self, *args, **kwargs)
            return _logged_fit(original, method, self, args, kwargs)
        finally:
            with _state.lock:
                _state.depth -= 1

    patched._ledger_autolog = True  # type: ignore[attr-defined]
    return patched


def _logged_fit(
    original: Callable[..., Any], method: str, estimator: Any, args: tuple, kwargs: dict
) -> Any:
    options = _state.options
    run = None
    try:
        run = new_run(
            options.get("project"),
            options.get("experiment"),
            type(estimator).__name__,
            activate=False,
        )
    except Exception as exc:
        _warn(exc)
    started = time.perf_counter()
    try:
        result = original(estimator, *args, **kwargs)
    except BaseException as exc:
        if run is not None:
            with contextlib.suppress(Exception):
                run.log_params(flatten_params(estimator))
            run.end("failed", message=f"{type(exc).__name__}: {exc}"[:MAX_VALUE_LENGTH])
        raise
    elapsed = time.perf_counter() - started
    if run is not None:
        try:
            _log_fitted(run, estimator, method, args, kwargs, elapsed)
            run.end("finished")
        except Exception as exc:
            _warn(exc)
            run.note(f"autolog could not log everything: {type(exc).__name__}: {exc}")
            run.end("finished")
    return result


def _warn(exc: BaseException) -> None:
    if not _state.warned:
        _state.warned = True
        log.warning(
            "ledger autolog: logging failed (%s: %s); fits are unaffected", type(exc).__name__, exc
        )


def _fit_data(args: tuple, kwargs: dict) -> tuple[Any, Any]:
    x = args[0] if args else kwargs.get("X")
    y = args[1] if len(args) > 1 else kwargs.get("y")
    return x, y


def _log_fitted(
    run: Run, estimator: Any, method: str, args: tuple, kwargs: dict, elapsed: float
) -> None:
    options = _state.options
    run.log_params(flatten_params(estimator))
    run.set_tags(
        {
            "ledger.source": "sklearn.autolog",
            "sklearn.estimator": f"{type(estimator).__module__}.{type(estimator).__qualname__}",
            "sklearn.method": method,
        }
    )
    metrics = {"training_time_s": elapsed}
    x, y = _fit_data(args, kwargs)
    if options.get("log_training_score") and x is not None and y is not None:
        metrics.update(_training_scores(estimator, x, y))
    run.log_metrics(metrics)
    if hasattr(estimator, "cv_results_") and options.get("log_search_children"):
        _log_search_into(estimator, run, log_model=False)
    if options.get("log_models"):
        _log_model_into(run, estimator)


def _training_scores(estimator: Any, x: Any, y: Any) -> dict[str, float]:
    from sklearn import metrics as skm
    from sklearn.base import is_classifier, is_regressor

    scores: dict[str, float] = {}
    # Scoring only reads the fitted model (predict/score), so the estimator's state and
    # any later result stay exactly as without autolog.
    if hasattr(estimator, "score") and (
        is_classifier(estimator) or is_regressor(estimator) or hasattr(estimator, "best_score_")
    ):
        with contextlib.suppress(Exception):
            scores["training_score"] = float(estimator.score(x, y))
    if not hasattr(estimator, "predict"):
        return scores
    try:
        if is_classifier(estimator):
            predicted = estimator.predict(x)
            scores["training_accuracy"] = float(skm.accuracy_score(y, predicted))
            precision, recall, f1, _ = skm.precision_recall_fscore_support(
                y, predicted, average="weighted", zero_division=0
            )
            scores.update(
                training_precision=float(precision),
                training_recall=float(recall),
                training_f1=float(f1),
            )
        elif is_regressor(estimator):
            predicted = estimator.predict(x)
            mse = float(skm.mean_squared_error(y, predicted))
            scores.update(
                training_r2=float(skm.r2_score(y, predicted)),
                training_mse=mse,
                training_rmse=math.sqrt(mse),
                training_mae=float(skm.mean_absolute_error(y, predicted)),
            )
    except Exception:  # an estimator that cannot predict on its training data as given
        pass
    return scores


# -- evaluation helpers ---------------------------------------------------------------------


def log_confusion_matrix(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Sequence[Any] | None = None,
    normalize: str | None = None,
    run: Run | None = None,
    name: str = "confusion_matrix",
) -> list[list[float]]:
    """Log the confusion matrix as ``<name>.json`` (labels + rows) and ``<name>.png``.

    Returns the matrix (rows: true labels, columns: predicted labels).

    Raises:
        NoActiveRunError: no ``run`` given and none active.
    """
    import numpy as np
    from sklearn.metrics import confusion_matrix

    target = _target(run)
    labels_used = (
        list(labels)
        if labels is not None
        else sorted(set(np.asarray(y_true).tolist()) | set(np.asarray(y_pred).tolist()))
    )
    matrix = confusion_matrix(y_true, y_pred, labels=labels_used, normalize=normalize)
    rows = matrix.tolist()
    target.log_dict(
        {"labels": [_plain(v) for v in labels_used], "normalize": normalize, "matrix": rows},
        f"{name}.json",
    )
    figure = _figure(1.2 + 0.6 * len(labels_used), 1.0 + 0.6 * len(labels_used))
    axes = figure.add_subplot()
    image = axes.imshow(matrix, cmap="Blues")
    figure.colorbar(image, ax=axes)
    ticks = range(len(labels_used))
    axes.set_xticks(list(ticks), [str(v) for v in labels_used], rotation=45, ha="right")
    axes.set_yticks(list(ticks), [str(v) for v in labels_used])
    axes.set_xlabel("predicted")
    axes.set_ylabel("true")
    threshold = matrix.max() / 2 if matrix.size else 0
    for i in ticks:
        for j in ticks:
            value = matrix[i, j]
            axes.text(
                j,
                i,
                f"{value:.2f}" if normalize else str(int(value)),
                ha="center",
                va="center",
                color="white" if value > threshold else "black",
                fontsize=8,
            )
    axes.set_title("Confusion matrix")
    target.log_figure(figure, f"{name}.png")
    return rows


def _plain(value: Any) -> Any:
    return value.item() if hasattr(value, "item") else value


def log_classification_report(
    y_true: Any,
    y_pred: Any,
    *,
    labels: Sequence[Any] | None = None,
    target_names: Sequence[str] | None = None,
    run: Run | None = None,
    prefix: str = "",
    name: str = "classification_report",
) -> dict[str, Any]:
    """Log sklearn's classification report: ``<name>.json`` and ``<name>.txt`` artifacts,
    and its summary as metrics ``<prefix>accuracy``, ``<prefix>precision_macro``,
    ``<prefix>recall_macro``, ``<prefix>f1_macro`` and the ``_weighted`` three.

    Returns the report as a dict (``output_dict=True``).
    """
    from sklearn.metrics import classification_report

    target = _target(run)
    report = classification_report(
        y_true,
        y_pred,
        labels=labels,
        target_names=target_names,
        output_dict=True,
        zero_division=0,
    )
    text = classification_report(
        y_true, y_pred, labels=labels, target_names=target_names, zero_division=0
    )
    target.log_dict(report, f"{name}.json")
    target.log_text(text, f"{name}.txt")
    summary: dict[str, float] = {}
    if "accuracy" in report:
        summary[f"{prefix}accuracy"] = float(report["accuracy"])
    for average, suffix in (("macro avg", "macro"), ("weighted avg", "weighted")):
        row = report.get(average, {})
        for key, label in (("precision", "precision"), ("recall", "recall"), ("f1-score", "f1")):
            if key in row:
                summary[f"{prefix}{label}_{suffix}"] = float(row[key])
    if summary:
        target.log_metrics(summary)
    return report


def log_feature_importances(
    model: Any,
    feature_names: Sequence[str] | None = None,
    *,
    run: Run | None = None,
    top: int | None = 20,
    name: str = "feature_importances",
) -> list[tuple[str, float]]:
    """Log a model's feature importances (``feature_importances_``, else ``|coef_|``
    averaged over classes) as ``<name>.csv`` and a bar chart ``<name>.png``.

    Returns ``(feature, importance)`` pairs, most important first.

    Raises:
        AdapterError: the model has neither ``feature_importances_`` nor ``coef_``.
    """
    import numpy as np

    target = _target(run)
    fitted = model.steps[-1][1] if hasattr(model, "steps") else model
    if hasattr(fitted, "feature_importances_"):
        values = np.asarray(fitted.feature_importances_, dtype=float)
        kind = "feature_importances_"
    elif hasattr(fitted, "coef_"):
        coef = np.abs(np.asarray(fitted.coef_, dtype=float))
        values = coef.mean(axis=0) if coef.ndim > 1 else coef
        kind = "|coef_|"
    else:
        raise AdapterError(f"{type(fitted).__name__} has neither feature_importances_ nor coef_")
    if feature_names is None:
        feature_names = list(
            getattr(model, "feature_names_in_", [f"x{i}" for i in range(len(values))])
        )
    if len(feature_names) != len(values):
        raise AdapterError(f"{len(feature_names)} feature names for {len(values)} importances")
    ranked = sorted(
        ((str(n), float(v)) for n, v in zip(feature_names, values, strict=True)),
        key=lambda pair: -pair[1],
    )
    lines = ["feature,importance"] + [f'"{n.replace(chr(34), chr(39))}",{v!r}' for n, v in ranked]
    target.log_text("\n".join(lines) + "\n", f"{name}.csv")
    shown = ranked[:top] if top else ranked
    figure = _figure(7.0, 0.6 + 0.28 * len(shown))
    axes = figure.add_subplot()
    axes.barh([n for n, _ in reversed(shown)], [v for _, v in reversed(shown)], color="#4c72b0")
    axes.set_xlabel(kind)
    axes.set_title("Feature importance")
    target.log_figure(figure, f"{name}.png")
    return ranked


def log_learning_curve(
    estimator: Any,
    x: Any,
    y: Any,
    *,
    cv: Any = 5,
    train_sizes: Sequence[float] = (0.1, 0.325, 0.55, 0.775, 1.0),
    scoring: str | None = None,
    n_jobs: int | None = None,
    random_state: int | None = 0,
    run: Run | None = None,
    name: str = "learning_curve",
) -> dict[str, list[float]]:
    """Compute sklearn's ``learning_curve`` and log it: metrics
    ``learning_curve_train_score`` / ``learning_curve_test_score`` (and ``_std``) with the
    number of training samples as the step, a ``<name>.json`` table and ``<name>.png``.

    Returns ``{"train_sizes", "train_mean", "train_std", "test_mean", "test_std"}``.
    """
    import numpy as np
    from sklearn.model_selection import learning_curve

    target = _target(run)
    sizes, train, test = learning_curve(
        estimator,
        x,
        y,
        cv=cv,
        train_sizes=np.asarray(train_sizes),
        scoring=scoring,
        n_jobs=n_jobs,
        shuffle=random_state is not None,
        random_state=random_state,
    )
    table = {
        "train_sizes": [int(s) for s in sizes],
        "train_mean": train.mean(axis=1).tolist(),
        "train_std": train.std(axis=1).tolist(),
        "test_mean": test.mean(axis=1).tolist(),
        "test_std": test.std(axis=1).tolist(),
    }
    for i, size in enumerate(table["train_sizes"]):
        target.log_metrics(
            {
                "learning_curve_train_score": table["train_mean"][i],
                "learning_curve_train_score_std": table["train_std"][i],
                "learning_curve_test_score": table["test_mean"][i],
                "learning_curve_test_score_std": table["test_std"][i],
            },
            step=size,
        )
    target.log_dict({"scoring": scoring or "default", **table}, f"{name}.json")
    figure = _figure()
    axes = figure.add_subplot()
    for key, label, color in (
        ("train", "training", "#4c72b0"),
        ("test", "cross-validation", "#dd8452"),
    ):
        mean = np.asarray(table[f"{key}_mean"])
        std = np.asarray(table[f"{key}_std"])
        axes.plot(table["train_sizes"], mean, "o-", color=color, label=label)
        axes.fill_between(table["train_sizes"], mean - std, mean + std, color=color, alpha=0.2)
    axes.set_xlabel("training samples")
    axes.set_ylabel(scoring or "score")
    axes.set_title(f"Learning curve: {type(estimator).__name__}")
    axes.legend(loc="best")
    target.log_figure(figure, f"{name}.png")
    return table
