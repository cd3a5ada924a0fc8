"""codecarbon really runs, offline, in a short real run; no network call is even tried."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap

import pytest

pytest.importorskip("codecarbon")

SCRIPT = textwrap.dedent(
    """
    import json, socket, sys, time

    attempts = []

    def refuse(name):
        def blocked(*args, **kwargs):
            attempts.append([name, repr(args[1:] if name.startswith("socket.") else args)])
            raise OSError(f"network disabled in this test ({name})")
        return blocked

    # Every way Python opens a connection or resolves a name goes through these.
    socket.socket.connect = refuse("socket.connect")
    socket.socket.connect_ex = refuse("socket.connect_ex")
    socket.getaddrinfo = refuse("getaddrinfo")
    socket.gethostbyname = refuse("gethostbyname")
    socket.create_connection = refuse("create_connection")

    import ledger
    from ledger.adapters import resources

    with ledger.start_run("p", "e", "carbon") as run:
        meter_ready = False
        deadline = time.monotonic() + 60
        while time.monotonic() < deadline:
            meter = resources.monitor().meter
            if meter is not None and meter._ready.wait(0.1):
                meter_ready = True
                break
        x = 0
        stop = time.monotonic() + 1.5
        while time.monotonic() < stop:  # a little CPU work to meter
            x += 1
    ledger.flush()
    rows = ledger.query(
        "SELECT kind, source, energy_kwh, cpu_energy_kwh, ram_energy_kwh, gpu_energy_kwh, "
        "emissions_kg, measured, attrs FROM costs WHERE run_id = ? ORDER BY ts", params=[run.id]
    ).to_dicts()
    cost = ledger.query("SELECT emissions_kg, emissions_source, energy_kwh FROM run_costs "
                        "WHERE run_id = ?", params=[run.id]).to_dicts()
    print(json.dumps({"attempts": attempts, "ready": meter_ready,
                      "note": resources.monitor().meter.carbon_note,
                      "rows": rows, "cost": cost}, default=str))
    """
)


@pytest.mark.slow
def test_codecarbon_offline_in_a_real_run(tmp_path, store_path):
    workdir = tmp_path / "cwd"
    workdir.mkdir()
    env = dict(os.environ)
    env.update(
        LEDGER_STORE=store_path,
        LEDGER_CARBON="1",
        LEDGER_CARBON_INTERVAL="0.5",
        LEDGER_COUNTRY="FRA",
        LEDGER_SYSTEM_INTERVAL="0.5",
        LEDGER_FLUSH_INTERVAL="0.2",
    )
    done = subprocess.run(
        [sys.executable, "-c", SCRIPT],
        cwd=workdir,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert result["attempts"] == [], "a network call was attempted"
    assert result["ready"] and result["note"] is None
    energy = [row for row in result["rows"] if row["kind"] == "energy"]
    final = energy[-1]
    attrs = json.loads(final["attrs"])
    assert attrs["final"] is True and attrs["country_iso_code"] == "FRA"
    assert final["source"] == "codecarbon"
    assert final["cpu_energy_kwh"] > 0 and final["ram_energy_kwh"] > 0
    assert final["energy_kwh"] == pytest.approx(final["cpu_energy_kwh"] + final["ram_energy_kwh"])
    assert final["emissions_kg"] > 0
    assert final["measured"] is False  # no RAPL here: TDP / load estimates
    assert attrs["sources"]["cpu"].startswith(("estimated:codecarbon", "measured:codecarbon"))
    assert attrs["cpu_power_w"] > 0
    assert result["cost"][0]["emissions_source"] == "codecarbon"
    # France's grid: codecarbon's offline table gives far below the world average
    assert final["emissions_kg"] / final["energy_kwh"] < 0.2
    assert list(workdir.iterdir()) == [], "files were written to the working directory"
