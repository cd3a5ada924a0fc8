"""The importer's fast paths give what the plain ones give (no MLflow needed)."""

from __future__ import annotations

import math
import random

import pyarrow as pa
import pytest
import yaml
from ledger.adapters.mlflow_import import (
    _flat_yaml,
    _parse_metric_lines,
    _Points,
    import_runs,
)
from ledger.analytics.engine import query


@pytest.mark.parametrize(
    "text",
    [
        "artifact_uri: file:///tmp/x/artifacts\nend_time: 1700000001000\n"
        "entry_point_name: ''\nexperiment_id: '1'\nlifecycle_stage: active\n"
        "run_id: e3e70682c2094cac629f6fbed82c07cd\nrun_name: run-0\nsource_type: 4\n"
        "start_time: 1700000000000\nstatus: 3\ntags: []\nuser_id: bench\n",
        "run_name: 'it''s: ü'\nend_time: null\ndeleted_time:\nflag: true\nuser_id: ~\n",
        "run_id: 0123456789abcdef0123456789abcdef\nname: 1e5abc\nx: {}\n",
        "run_name: '123'\nother: 'True'\n",
    ],
)
def test_flat_yaml_equals_yaml(text):
    assert _flat_yaml(text.encode()) == yaml.safe_load(text)


@pytest.mark.parametrize(
    "text",
    [
        "tags:\n- key: a\n  value: b\n",  # a list: not flat
        'name: "double"\n',
        "when: 2024-01-31\n",  # a date for YAML
        "ratio: 0.5\n",
        "name: a # comment\n",
        "name: 'unclosed\n",
        "run_id: [unclosed\n",
        "text: |\n  block\n",
        "hex: 0x1f\n",
        "a: 1\na: 2\n",
    ],
)
def test_flat_yaml_declines_what_it_does_not_parse_exactly(text):
    assert _flat_yaml(text.encode()) is None


def test_metric_lines_parse_exactly_or_not_at_all():
    table = _parse_metric_lines(b"1 nan 0\n2 inf -1\n3 -inf 2\n4 1.7976931348623157e+308 3\n")
    assert table is not None
    values = table.column("value").to_pylist()
    assert math.isnan(values[0]) and values[1:3] == [math.inf, -math.inf]
    assert values[3] == 1.7976931348623157e308
    assert table.column("step").to_pylist() == [0, -1, 2, 3]
    assert _parse_metric_lines(b"1 2\n") is None  # step-less line (old MLflow)
    assert _parse_metric_lines(b"1 x 0\n") is None


def _events(points: _Points, first: int, stop: int) -> list[tuple]:
    table = points.events(first, stop)
    columns = [table.column(n).to_pylist() for n in ("run_id", "key", "step", "ts", "seq")]
    values = table.column("value").to_pylist()
    return [(*row, repr(v)) for *row, v in zip(*columns, values, strict=True)]


def test_points_identity_does_not_depend_on_row_order():
    rng = random.Random(7)
    rows = []
    for run in ("a" * 32, "b" * 32, "c" * 32):
        for key in ("loss", "acc", "z/ü"):
            for step in (-1, 0, 0, 3, 2):  # negative and repeated steps
                value = rng.choice([math.nan, math.inf, -math.inf, 0.5, rng.random()])
                rows.append((run, key, value, step, 1000 + step))
    columns = list(zip(*rows, strict=True))
    names = ["run_id", "key", "value", "step", "timestamp"]

    def table(order: list[tuple]) -> pa.Table:
        cols = list(zip(*order, strict=True))
        return pa.table(dict(zip(names, cols, strict=True)))

    ordered = _Points(
        table(sorted(rows, key=lambda r: (r[0], r[1], r[3]))), ["c" * 32, "a" * 32, "b" * 32]
    )
    shuffled_rows = rows[:]
    rng.shuffle(shuffled_rows)
    shuffled = _Points(table(shuffled_rows), ["c" * 32, "a" * 32, "b" * 32])
    assert _events(ordered, 0, 3) == _events(shuffled, 0, 3)
    assert _events(ordered, 1, 2) == _events(shuffled, 1, 2)
    got = _events(shuffled, 0, 3)
    assert len(got) == len(columns[0])
    # seq counts 0.. within each run, in (key, step, timestamp, value) order
    for run in ("a" * 32, "b" * 32, "c" * 32):
        mine = [r for r in got if r[0] == run]
        assert [r[4] for r in mine] == list(range(len(mine)))
        assert [(r[1], r[2]) for r in mine] == sorted((r[1], r[2]) for r in mine)
    assert ordered.count(1)[0] == 15


def test_file_store_blank_and_stepless_lines(tmp_path):
    # Old MLflow versions wrote "<ts> <value>" lines; blank lines are tolerated too.
    run_id = "0" * 31 + "1"
    exp = tmp_path / "mlruns" / "1"
    run = exp / run_id
    (run / "metrics").mkdir(parents=True)
    (exp / "meta.yaml").write_text(
        "artifact_location: x\nexperiment_id: '1'\nlifecycle_stage: active\nname: old\n"
    )
    (run / "meta.yaml").write_text(
        f"run_id: {run_id}\nexperiment_id: '1'\nstatus: 3\nstart_time: 1000\n"
        "end_time: 2000\nlifecycle_stage: active\nrun_name: r\n"
    )
    (run / "metrics" / "loss").write_text("1000 0.5\n\n1001 0.25 1\n")
    (run / "metrics" / "acc").write_text("1000 0.75 0\n")
    summary = import_runs(str(tmp_path / "mlruns"), str(tmp_path / "store"))
    assert summary.errors == [] and summary.metric_points == 3
    rows = query(
        "SELECT key, step, value FROM metrics ORDER BY key, step", str(tmp_path / "store")
    ).rows()
    assert rows == [("acc", 0, 0.75), ("loss", 0, 0.5), ("loss", 1, 0.25)]


@pytest.mark.parametrize("layout", ["random", "blocks", "reversed", "repeated-blocks", "empty"])
def test_block_order_equals_a_stable_sort(layout):
    import numpy as np
    from ledger.adapters.mlflow_import import _stable_order

    rng = np.random.default_rng(3)
    if layout == "random":
        group = rng.integers(0, 7, 5000)
    elif layout == "blocks":  # runs logged one after another, in any id order
        group = np.repeat(rng.permutation(200), 25)
    elif layout == "reversed":
        group = np.sort(rng.integers(0, 50, 5000))[::-1].copy()
    elif layout == "repeated-blocks":  # the same (run, key) in several blocks
        group = np.repeat(rng.integers(0, 30, 300), 20)
    else:
        group = np.zeros(0, np.int64)
    order, blocks = _stable_order(group)
    assert (order == np.argsort(group, kind="stable")).all()
    if len(group):
        assert blocks[0] == 0 and all(group[b] != group[b - 1] for b in blocks[1:])


def test_fingerprint_in_parts_equals_the_whole_json():
    # A fingerprint is built around its metric figures while the scan runs; it must stay
    # the hash of the same JSON, or a store imported before would re-import as updated.
    import json

    from ledger.adapters.mlflow_import import RunRecord, _fingerprint

    from ledger.ids import stable_id

    def whole(record, n_points, last_ts, artifacts):
        data = [
            record.status,
            record.end_time,
            record.lifecycle_stage,
            record.name,
            sorted(record.params.items()),
            sorted(record.tags.items()),
            record.inputs,
            n_points,
            last_ts,
            artifacts,
        ]
        return stable_id(json.dumps(data, sort_keys=True, default=str))

    run = RunRecord(
        "a" * 32, "1", 'nä"me', "FINISHED", 1, None, "active", None, None,
        params={"p": "1", "é": "x\n"}, tags={"t": "v"},
        inputs=[{"name": "d", "tags": {"b": "1", "a": "2"}, "digest": None}],
    )  # fmt: skip
    bare = RunRecord("b" * 32, "1", None, "RUNNING", None, None, "deleted", "u", "file:/x")
    for record in (run, bare):
        for n_points, last_ts, artifacts in [(0, 0, []), (5, -3, [("x/y", None), ("ü", 12)])]:
            assert _fingerprint(record, n_points, last_ts, artifacts) == whole(
                record, n_points, last_ts, artifacts
            )


@pytest.mark.parametrize("layout", ["runs-in-blocks", "interleaved"])
def test_coded_points_equal_the_table_path(layout):
    # The sqlite reader's coded columns (reader's run codes, -1 for runs not selected)
    # must give the same events, counts and last timestamps as a plain Arrow table.
    import numpy as np
    from ledger.adapters.mlflow_import import _CodedPoints

    rng = np.random.default_rng(11)
    reader_ids = [f"{i:032x}" for i in range(12)]
    keys = ["acc", "loss", "z/ü"]
    rows = []  # (reader run code, key code, value, step, stamp)
    for run in rng.permutation(len(reader_ids)):
        for key in range(len(keys)):
            for step in rng.integers(-2, 30, 25):
                value = rng.choice([math.nan, math.inf, -math.inf, float(rng.random())])
                rows.append((int(run), key, value, int(step), int(1000 + rng.integers(0, 50))))
    rows.append((-1, 0, 1.0, 0, 5))  # a row of a run the reader did not list
    if layout == "interleaved":
        rng.shuffle(rows)
    coded = _CodedPoints(reader_ids, keys, len(rows))
    columns = list(zip(*rows, strict=True))
    for name, column in zip(("run", "key", "value", "step", "stamp"), columns, strict=True):
        getattr(coded, name)[:] = column
    coded.group[:] = coded.run * coded.width + coded.key
    selected = [reader_ids[i] for i in (5, 0, 7, 3, 11, 2)] + ["f" * 32]  # order, subset
    from_coded = _Points(coded, selected)
    known = [r for r in rows if r[0] >= 0]
    table = pa.table(
        {
            "run_id": [reader_ids[r[0]] for r in known],
            "key": [keys[r[1]] for r in known],
            "value": [r[2] for r in known],
            "step": [r[3] for r in known],
            "timestamp": [r[4] for r in known],
        }
    )
    from_table = _Points(table, selected)
    for first, stop in ((0, 7), (0, 2), (3, 6), (6, 7)):
        assert _events(from_coded, first, stop) == _events(from_table, first, stop)
    for index in range(len(selected)):
        assert from_coded.count(index) == from_table.count(index)
