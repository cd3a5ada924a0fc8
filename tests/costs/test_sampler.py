"""The resource sampler in real runs, its off switch, and the NVML path with real errors."""

from __future__ import annotations

import json
import subprocess
import sys
import time

import pynvml
import pytest
from ledger.adapters import resources

import ledger
from ledger import hooks


@pytest.fixture
def fast_sampling(monkeypatch):
    monkeypatch.setenv("LEDGER_SYSTEM_INTERVAL", "0.05")
    monkeypatch.setattr(resources, "_monitor", None)
    yield
    monitor = resources._monitor
    if monitor is not None:
        monitor.interval = 0.05


def _wait_for(predicate, timeout=10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_sampler_writes_system_samples_in_a_real_run(fast_sampling, store_path):
    with ledger.start_run("p", "e", "sampled", store=store_path) as run:
        monitor = resources.monitor()
        assert _wait_for(lambda: monitor.samples_taken >= 3)
    keys = ledger.query(
        "SELECT device, key, count(*) AS n FROM system_metrics WHERE run_id = ? GROUP BY ALL",
        store_path,
        [run.id],
    )
    pairs = {(d, k) for d, k in zip(keys["device"], keys["key"], strict=True)}
    for expected in [
        ("process", "cpu_percent"),
        ("process", "rss_bytes"),
        ("system", "cpu_percent"),
        ("system", "memory_used_bytes"),
        ("system", "memory_total_bytes"),
    ]:
        assert expected in pairs
    assert keys["n"].min() >= 2
    facts = ledger.query(
        "SELECT attrs FROM costs WHERE run_id = ? AND kind = 'resources'", store_path, [run.id]
    )
    attrs = json.loads(facts["attrs"][0])
    assert attrs["cpu_cores"] >= 1
    if resources.Gpus().error:  # no GPU here: CPU only, and the run says why
        assert attrs["gpu_count"] == 0
        notes = ledger.query(
            "SELECT message FROM events_runs WHERE run_id = ? AND event = 'note'",
            store_path,
            [run.id],
        )["message"].to_list()
        assert any("GPU metrics off" in n and "recording CPU metrics only" in n for n in notes)


def test_off_with_one_flag(fast_sampling, store_path, monkeypatch):
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")
    with ledger.start_run("p", "e", store=store_path) as run:
        time.sleep(0.2)
    n = ledger.query(
        "SELECT count(*) AS n FROM system_metrics WHERE run_id = ?", store_path, [run.id]
    )["n"][0]
    assert n == 0


def test_interval_from_config(store_path, monkeypatch):
    monkeypatch.delenv("LEDGER_SYSTEM_INTERVAL", raising=False)
    import os

    os.makedirs(store_path, exist_ok=True)
    with open(os.path.join(store_path, "ledger.toml"), "w") as handle:
        handle.write('[system]\ninterval = "250ms"\n[costs]\ninstance_type = "g6.xlarge"\n')
    settings = resources.settings_from(ledger.store.open_store(store_path).read_config())
    assert settings.interval == pytest.approx(0.25)
    assert settings.instance_type == "g6.xlarge"
    assert settings.instance_source == "config:costs.instance_type"
    monkeypatch.setenv("LEDGER_INSTANCE_TYPE", "p5.48xlarge")
    assert resources.settings_from({}).instance_source == "env:LEDGER_INSTANCE_TYPE"


def test_sampling_failure_never_reaches_training(fast_sampling, store_path, monkeypatch):
    def broken(self, ts):
        raise OSError("psutil exploded")

    monkeypatch.setattr(resources.HostSampler, "sample", broken)
    with ledger.start_run("p", "e", store=store_path) as run:
        assert _wait_for(lambda: resources.monitor().interval is None)
        run.log_metric("loss", 1.0)
    notes = ledger.query(
        "SELECT message FROM events_runs WHERE run_id = ? AND event = 'note'", store_path, [run.id]
    )["message"].to_list()
    assert any("system metrics off: sampling failed (OSError: psutil exploded)" in n for n in notes)
    assert (
        ledger.query("SELECT status FROM runs WHERE run_id = ?", store_path, [run.id])["status"][0]
        == "finished"
    )


def test_failing_hook_is_a_note_not_an_exception(store_path, monkeypatch):
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")

    def bad_hook(run):
        raise RuntimeError("boom")

    hooks.on_run_start(bad_hook)
    try:
        with ledger.start_run("p", "e", store=store_path) as run:
            pass
    finally:
        hooks.remove(bad_hook)
    notes = ledger.query(
        "SELECT message FROM events_runs WHERE run_id = ? AND event = 'note'", store_path, [run.id]
    )["message"].to_list()
    assert any("RuntimeError: boom" in n for n in notes)


def test_without_nvml_the_real_error_is_reported():
    gpus = resources.Gpus()
    try:
        pynvml.nvmlInit()
        pynvml.nvmlShutdown()
        pytest.skip("this machine has NVML; see benchmarks/gpu_check.py")
    except pynvml.NVMLError as exc:
        assert gpus.handles == [] and not gpus.energy_counter
        assert type(exc).__name__ in gpus.error
        assert gpus.sample(time.time()) == []


class _FakeNvml:
    """Stands in for the driver only: results are pynvml's own structs and errors."""

    def __init__(self, energy_supported: bool):
        self.energy_supported = energy_supported
        self.energy = 1_000_000

    def install(self, monkeypatch):
        monkeypatch.setattr(pynvml, "nvmlInit", lambda: None)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 1)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetHandleByIndex", lambda i: f"handle{i}")
        monkeypatch.setattr(pynvml, "nvmlDeviceGetName", lambda h: "NVIDIA H100 80GB HBM3")
        util = pynvml.c_nvmlUtilization_t()
        util.gpu, util.memory = 97, 40
        monkeypatch.setattr(pynvml, "nvmlDeviceGetUtilizationRates", lambda h: util)
        memory = pynvml.c_nvmlMemory_t()
        memory.total, memory.used = 80 * 2**30, 20 * 2**30
        monkeypatch.setattr(pynvml, "nvmlDeviceGetMemoryInfo", lambda h: memory)
        monkeypatch.setattr(pynvml, "nvmlDeviceGetPowerUsage", lambda h: 350_500)

        def temperature(h, sensor):
            raise pynvml.NVMLError(pynvml.NVML_ERROR_NO_PERMISSION)

        monkeypatch.setattr(pynvml, "nvmlDeviceGetTemperature", temperature)

        def energy(h):
            if not self.energy_supported:
                raise pynvml.NVMLError(pynvml.NVML_ERROR_NOT_SUPPORTED)
            self.energy += 3_600_000  # 3.6 kJ per read
            return self.energy

        monkeypatch.setattr(pynvml, "nvmlDeviceGetTotalEnergyConsumption", energy)


def test_gpu_metrics_and_unsupported_ones_with_real_nvml_errors(monkeypatch):
    _FakeNvml(energy_supported=False).install(monkeypatch)
    gpus = resources.Gpus()
    assert gpus.error is None and gpus.names == ["NVIDIA H100 80GB HBM3"]
    assert not gpus.energy_counter  # NVMLError_NotSupported on the energy counter
    rows = {(d, k): v for d, k, v, _ in gpus.sample(0.0)}
    assert rows[("gpu0", "utilization_percent")] == 97
    assert rows[("gpu0", "memory_used_bytes")] == 20 * 2**30
    assert rows[("gpu0", "power_w")] == pytest.approx(350.5)
    assert ("gpu0", "temperature_c") not in rows  # NVMLError_NoPermission: skipped
    assert ("gpu0", "energy_j") not in rows
    assert gpus.total_energy_mj() is None


def test_energy_counter_gives_measured_gpu_energy(monkeypatch, store_path):
    fake = _FakeNvml(energy_supported=True)
    fake.install(monkeypatch)
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")  # drive the meter by hand
    settings = resources.ResourceSettings(carbon=False)
    monitor = resources.ResourceMonitor()
    meter = resources.EnergyMeter(monitor, settings)
    meter._start()
    meter._ready.set()
    assert meter.gpus is not None and meter.gpus.energy_counter
    run = ledger.start_run("p", "e", store=store_path)
    tracked = resources._Tracked(run, settings, time.time() - 1)
    monitor._runs[run.id] = tracked
    meter.settle()
    rows = [r for k, _, r in run._writer._events if k == "costs" and r["kind"] == "energy"]
    assert rows[-1]["gpu_energy_kwh"] == pytest.approx(3_600_000 / 3.6e9)  # one read apart
    assert rows[-1]["measured"] is True
    assert json.loads(rows[-1]["attrs"])["sources"] == {"gpu": "measured:nvml:energy-counter"}
    assert rows[-1]["cpu_energy_kwh"] is None  # codecarbon off: not estimated, not zero
    run.end()


def test_attribute_splits_overlapping_runs():
    shares = resources.attribute(0, 10, {"a": (0, float("inf")), "b": (5, 8), "c": (20, 30)})
    # 0-5: a alone; 5-8: a and b; 8-10: a alone
    assert shares["a"] == pytest.approx(0.5 + 0.15 + 0.2)
    assert shares["b"] == pytest.approx(0.15)
    assert shares["c"] == 0
    assert resources.attribute(0, 10, {"x": (2, 4)}) == {"x": pytest.approx(0.2)}


def test_import_ledger_stays_light():
    code = (
        "import sys, ledger; heavy = [m for m in ('psutil', 'pynvml', 'codecarbon', 'duckdb',"
        " 'pyarrow', 'ledger.adapters.resources') if m in sys.modules]; print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"


def test_cuda_visible_devices_limits_sampled_and_billed_gpus(monkeypatch):
    fake = _FakeNvml(energy_supported=True)
    fake.install(monkeypatch)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetCount", lambda: 4)
    monkeypatch.setattr(pynvml, "nvmlDeviceGetUUID", lambda h: f"GPU-{h[-1]}abc")
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "2,0")
    assert resources.Gpus().handles == ["handle2", "handle0"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "GPU-3")
    assert resources.Gpus().handles == ["handle3"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "1,7,2")  # CUDA stops at the invalid 7
    assert resources.Gpus().handles == ["handle1"]
    monkeypatch.setenv("CUDA_VISIBLE_DEVICES", "")
    gpus = resources.Gpus()
    assert gpus.handles == [] and "leaves no GPU visible" in gpus.error


def test_meter_pauses_without_runs_and_resumes(monkeypatch, store_path):
    fake = _FakeNvml(energy_supported=True)
    fake.install(monkeypatch)
    monkeypatch.setenv("LEDGER_SYSTEM_METRICS", "0")
    settings = resources.ResourceSettings(carbon=False)
    monitor = resources.ResourceMonitor()
    meter = resources.EnergyMeter(monitor, settings)
    meter._start()
    meter._ready.set()
    first = ledger.start_run("p", "e", "first", store=store_path)
    tracked = monitor._runs[first.id] = resources._Tracked(first, settings, time.time())
    tracked.ended = time.time()
    meter.settle(final=tracked)
    del monitor._runs[first.id]
    assert meter._window_start is None  # paused: nothing open
    second = ledger.start_run("p", "e", "second", store=store_path)
    monitor._runs[second.id] = resources._Tracked(second, settings, time.time())
    meter._resume()
    assert meter._window_start is not None
    meter.settle()
    rows = [r for k, _, r in second._writer._events if k == "costs" and r["run_id"] == second.id]
    assert rows and rows[-1]["gpu_energy_kwh"] > 0
    first.end()
    second.end()
