"""A real, quick demo: a learning-rate sweep of logistic regression trained by hand.

Logs into ./.ledger (or $LEDGER_STORE), then reports from the store with SQL.
Run with `make demo` or `python examples/demo.py`.
"""

from __future__ import annotations

import numpy as np

import ledger


def make_data(seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    rng = np.random.default_rng(seed)
    features = rng.normal(size=(2000, 8))
    weights = rng.normal(size=8)
    labels = (features @ weights + rng.normal(scale=0.5, size=2000) > 0).astype(float)
    return features, labels


def train(
    run: ledger.Run, features: np.ndarray, labels: np.ndarray, lr: float, epochs: int
) -> float:
    weights = np.zeros(features.shape[1])
    split = int(len(labels) * 0.8)
    x_train, y_train, x_val, y_val = (
        features[:split],
        labels[:split],
        features[split:],
        labels[split:],
    )
    accuracy = 0.0
    for epoch in range(epochs):
        predictions = 1 / (1 + np.exp(-(x_train @ weights)))
        gradient = x_train.T @ (predictions - y_train) / len(y_train)
        weights -= lr * gradient
        loss = float(
            -np.mean(
                y_train * np.log(predictions + 1e-12)
                + (1 - y_train) * np.log(1 - predictions + 1e-12)
            )
        )
        if not np.isfinite(loss) or loss > 2.0:
            raise FloatingPointError(f"loss diverged at epoch {epoch}")
        accuracy = float(np.mean(((x_val @ weights) > 0) == y_val))
        run.log_metrics({"loss": loss, "val_acc": accuracy}, step=epoch)
    return accuracy


def main() -> None:
    features, labels = make_data()
    with ledger.start_run("demo", "lr-sweep", name="sweep") as sweep:
        ledger.seed(7)
        sweep.log_dataset("synthetic", features)
        for lr in (0.01, 0.1, 0.5, 1.0, 5.0, 400.0):
            try:
                with ledger.start_run(name=f"lr-{lr}", params={"lr": lr, "epochs": 60}) as run:
                    run.set_tag("model", "logreg")
                    train(run, features, labels, lr, epochs=60)
            except FloatingPointError as error:
                print(f"run lr-{lr} failed as planned: {error}")
    print(
        ledger.query(
            """
        SELECT r.name, r.status, p.value AS lr,
               round(max(m.value), 4) AS best_val_acc, round(r.duration_s, 3) AS seconds
        FROM runs r
        JOIN params p ON p.run_id = r.run_id AND p.key = 'lr'
        LEFT JOIN metrics m ON m.run_id = r.run_id AND m.key = 'val_acc'
        WHERE r.parent_run_id = ?
        GROUP BY ALL ORDER BY best_val_acc DESC NULLS LAST
        """,
            params=[sweep.id],
        )
    )
    # What the sweep cost: CPU core-hours at the catalog's default rate (no instance type
    # configured here), energy from codecarbon when installed, and which runs were wasted.
    from ledger.output import render

    report = ledger.report_costs(project="demo", by="experiment", metric="val_acc")
    render(report.groups, title="What the sweep cost (ledger report costs --by experiment)")
    render(report.front, title="Pareto front: val_acc vs cost")


if __name__ == "__main__":
    main()
