"""Property tests: whatever is logged comes back exactly through Parquet and DuckDB."""

from __future__ import annotations

import math
import struct

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import ledger

keys = st.text(min_size=1, max_size=40).filter(lambda k: k.strip() != "")
metric_values = st.floats(allow_nan=True, allow_infinity=True, width=64)
steps = st.integers(min_value=-(2**63), max_value=2**63 - 1)
param_values = st.one_of(
    st.integers(min_value=-(2**63), max_value=2**63 - 1),
    st.floats(allow_nan=False),
    st.booleans(),
    st.text(max_size=200),
)


def _same_float(a: float, b: float) -> bool:
    return struct.pack("<d", a) == struct.pack("<d", b) or (math.isnan(a) and math.isnan(b))


@settings(
    max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    points=st.lists(st.tuples(keys, metric_values, steps), min_size=1, max_size=50),
    params=st.dictionaries(keys, param_values, max_size=8),
    tags=st.dictionaries(keys, st.text(max_size=100), max_size=8),
    batched=st.booleans(),
)
def test_events_round_trip_through_views(tmp_path_factory, points, params, tags, batched):
    store = str(tmp_path_factory.mktemp("prop"))
    with ledger.start_run("prop", params=params, tags=tags, store=store) as run:
        for key, value, step in points:
            if batched:
                run.log_metrics({key: value}, step=step)
            else:
                run.log_metric(key, value, step=step)
    got = ledger.query("SELECT key, value, step FROM metrics ORDER BY seq", store=store).rows()
    assert [(k, s) for k, _, s in got] == [(k, s) for k, _, s in points]
    assert all(_same_float(a[1], b[1]) for a, b in zip(got, points, strict=True))
    stored_params = dict(ledger.query("SELECT key, value FROM params", store=store).rows())
    assert stored_params == {k: ledger.run.param_text(v)[0] for k, v in params.items()}
    stored_tags = dict(ledger.query("SELECT key, value FROM tags", store=store).rows())
    assert stored_tags == tags
    latest = dict(ledger.query("SELECT key, n_points FROM latest_metrics", store=store).rows())
    expected: dict[str, int] = {}
    for key, _, _ in points:
        expected[key] = expected.get(key, 0) + 1
    assert latest == expected
