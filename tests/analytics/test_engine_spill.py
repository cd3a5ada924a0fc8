"""A query bigger than memory spills outside the user's working directory."""

from __future__ import annotations

import os

from ledger.analytics.engine import connect


def test_duckdb_spills_to_the_system_temp_dir_not_the_working_directory(
    store_path, tmp_path, monkeypatch
):
    project = tmp_path / "project"
    project.mkdir()
    monkeypatch.chdir(project)
    con = connect(store_path)
    try:
        spill = con.execute("SELECT current_setting('temp_directory')").fetchall()[0][0]
    finally:
        con.close()
    # DuckDB's own default for an in-memory database is the relative `.tmp`.
    assert os.path.isabs(spill)
    assert not spill.startswith(str(project))
