"""The run API: values round-trip through Parquet into the views."""

from __future__ import annotations

import math

import pytest

import ledger


def test_populated_store_fixture_folds_into_views(populated_store):
    runs = ledger.query("SELECT name, status, message FROM runs ORDER BY name",
                        store=populated_store)
    assert runs.rows() == [
        ("a", "finished", None),
        ("b", "finished", None),
        ("c", "failed", "RuntimeError: diverged"),
    ]
    latest = ledger.query(
        "SELECT r.name, l.value, l.step, l.min_value, l.max_value, l.n_points "
        "FROM latest_metrics l JOIN runs r USING (run_id) WHERE key = 'acc' ORDER BY r.name",
        store=populated_store,
    ).rows()
    assert latest[0][0] == "a" and latest[0][1] == pytest.approx(0.86) and latest[0][2] == 9
    assert latest[1][0] == "b" and math.isnan(latest[1][1]) and latest[1][2] == 10
    assert latest[1][3:] == (0.6, 0.6, 11)
