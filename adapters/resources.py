"""Resource sampling and energy metering that follow every run (psutil, NVML, codecarbon).

Installed by ``ledger/__init__.py`` as a run hook (see ``ledger/hooks.py``). At a run's
start the hook only registers the run with two process-wide background threads, so
starting a run stays cheap (DESIGN.md invariant 6):

- ``ledger-sampler`` samples every ``[system] interval`` (default 1 s) the process and
  the host (CPU %, RSS, memory, disk and network I/O rates via psutil) and each GPU
  (utilisation, memory, power, temperature, NVML's cumulative energy counter) and appends
  the samples to every open run's ``system`` buffer. Without NVML it samples the CPU side
  only and records why as a note on each run.
- ``ledger-energy`` meters energy in windows (``[carbon] interval``, default 15 s; and at
  each run end). One codecarbon ``OfflineEmissionsTracker`` per process, built in this
  thread (its hardware probing takes ~1.5 s), measures each window with its task API;
  GPU energy comes from NVML's energy counters where the card has them (measured)
  instead of codecarbon's figures. A window's energy is split between the runs open in
  it, equally among the runs open at each instant, and each run gets a cumulative
  ``costs`` event (kind ``energy``) at every window and at its end.

Nothing here raises into training: a failure turns off that side channel, logs one
warning and leaves a note on the affected runs.
"""

from __future__ import annotations

import contextlib
import itertools
import json
import logging
import os
import threading
import time
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from ledger import hooks
from ledger.capture import HOST
from ledger.durations import parse_duration
from ledger.errors import ConfigError

if TYPE_CHECKING:
    from ledger.run import Run
    from ledger.store import Store

log = logging.getLogger("ledger")

ENV_SYSTEM = "LEDGER_SYSTEM_METRICS"
"""``0`` switches resource sampling (and energy metering) off."""
ENV_INTERVAL = "LEDGER_SYSTEM_INTERVAL"
ENV_CARBON = "LEDGER_CARBON"
"""``0`` switches codecarbon off (NVML energy counters are still read)."""
ENV_CARBON_INTERVAL = "LEDGER_CARBON_INTERVAL"
ENV_COUNTRY = "LEDGER_COUNTRY"
ENV_INSTANCE_TYPE = "LEDGER_INSTANCE_TYPE"
ENV_REGION = "LEDGER_REGION"

_OFF = ("0", "false", "no", "off")
_MJ_PER_KWH = 3.6e9
_J_PER_KWH = 3.6e6


@dataclass(frozen=True)
class ResourceSettings:
    """``[system]``, ``[carbon]`` and the run-placement keys of ``[costs]``."""

    enabled: bool = True
    interval: float = 1.0
    carbon: bool = True
    carbon_interval: float = 15.0
    country: str | None = None
    carbon_region: str | None = None
    instance_type: str | None = None
    instance_source: str | None = None
    region: str | None = None
    region_source: str | None = None


def settings_from(raw: dict[str, Any]) -> ResourceSettings:
    """Resource settings from a parsed ``ledger.toml``, overridden by environment variables.

    Raises:
        ConfigError: a bad interval or a non-table section.
    """
    system, carbon, costs = (_section(raw, name) for name in ("system", "carbon", "costs"))
    enabled = os.environ.get(ENV_SYSTEM, "").lower() not in _OFF and bool(
        system.get("enabled", True)
    )
    use_carbon = os.environ.get(ENV_CARBON, "").lower() not in _OFF and bool(
        carbon.get("enabled", True)
    )
    interval = parse_duration(
        os.environ.get(ENV_INTERVAL) or system.get("interval", 1.0), what="sampling interval"
    )
    carbon_interval = parse_duration(
        os.environ.get(ENV_CARBON_INTERVAL) or carbon.get("interval", 15.0),
        what="energy metering interval",
    )
    if interval <= 0 or carbon_interval <= 0:
        raise ConfigError(
            f"Sampling intervals must be positive, got {interval} s and {carbon_interval} s"
        )
    instance_type, instance_source = _placement(ENV_INSTANCE_TYPE, costs, "instance_type")
    region, region_source = _placement(ENV_REGION, costs, "region")
    return ResourceSettings(
        enabled=enabled,
        interval=interval,
        carbon=use_carbon,
        carbon_interval=carbon_interval,
        country=os.environ.get(ENV_COUNTRY) or carbon.get("country_iso_code"),
        carbon_region=carbon.get("region"),
        instance_type=instance_type,
        instance_source=instance_source,
        region=region,
        region_source=region_source,
    )


def _section(raw: dict[str, Any], name: str) -> dict[str, Any]:
    section = raw.get(name, {})
    if not isinstance(section, dict):
        raise ConfigError(f"[{name}] in ledger.toml must be a table, got {section!r}")
    return section


def _placement(env_name: str, section: dict[str, Any], key: str) -> tuple[str | None, str | None]:
    if os.environ.get(env_name):
        return os.environ[env_name], f"env:{env_name}"
    if section.get(key):
        return str(section[key]), f"config:costs.{key}"
    return None, None


# -- hardware probes ----------------------------------------------------------------------------


class Gpus:
    """NVML access that never raises: unsupported metrics are dropped per device."""

    def __init__(self) -> None:
        self.handles: list[Any] = []
        self.names: list[str] = []
        self.error: str | None = None
        self.energy_counter = False
        self._unsupported: set[tuple[int, str]] = set()
        self._nvml: Any = None
        try:
            import pynvml
        except ImportError as exc:
            self.error = f"nvidia-ml-py is not installed ({exc})"
            return
        self._nvml = pynvml
        try:
            pynvml.nvmlInit()
            count = pynvml.nvmlDeviceGetCount()
            for index in range(count):
                handle = pynvml.nvmlDeviceGetHandleByIndex(index)
                name = pynvml.nvmlDeviceGetName(handle)
                self.handles.append(handle)
                self.names.append(name.decode() if isinstance(name, bytes) else str(name))
        except pynvml.NVMLError as exc:
            self.handles, self.names = [], []
            self.error = f"NVML unavailable ({type(exc).__name__}: {exc})"
            return
        self._restrict_to_visible(pynvml)
        if not self.handles:
            self.error = self.error or "NVML found no GPU"
            return
        self.energy_counter = all(self.energy_mj(i) is not None for i in range(len(self.handles)))

    def _restrict_to_visible(self, pynvml: Any) -> None:
        """Keep the GPUs this process may use (``CUDA_VISIBLE_DEVICES``), so a run on one
        GPU of eight is sampled and billed for one. Integer entries are NVML (PCI bus)
        indices, as with ``CUDA_DEVICE_ORDER=PCI_BUS_ID``; ``GPU-``/``MIG-`` entries are
        UUIDs (or their prefixes)."""
        visible = os.environ.get("CUDA_VISIBLE_DEVICES")
        if visible is None:
            return
        entries = [entry.strip() for entry in visible.split(",") if entry.strip()]
        pairs = list(zip(self.handles, self.names, strict=True))
        chosen: list[tuple[Any, str]] = []
        for entry in entries:
            if entry.lstrip("-").isdigit():
                index = int(entry)
                if index < 0 or index >= len(pairs):
                    break  # CUDA ignores this entry and every one after it
                chosen.append(pairs[index])
                continue
            for handle, name in pairs:
                try:
                    uuid = pynvml.nvmlDeviceGetUUID(handle)
                except pynvml.NVMLError:
                    continue
                uuid = uuid.decode() if isinstance(uuid, bytes) else str(uuid)
                if uuid.startswith(entry):
                    chosen.append((handle, name))
                    break
            else:
                break
        self.handles = [handle for handle, _ in chosen]
        self.names = [name for _, name in chosen]
        if not chosen:
            self.error = f"CUDA_VISIBLE_DEVICES={visible!r} leaves no GPU visible"

    def _read(self, index: int, key: str, function: str, *args: Any) -> Any:
        if (index, key) in self._unsupported:
            return None
        try:
            return getattr(self._nvml, function)(self.handles[index], *args)
        except self._nvml.NVMLError:
            # NotSupported / NoPermission / GpuIsLost: skip this metric on this device.
            self._unsupported.add((index, key))
            return None

    def energy_mj(self, index: int) -> int | None:
        """NVML's cumulative energy counter (millijoules since the driver loaded)."""
        return self._read(index, "energy", "nvmlDeviceGetTotalEnergyConsumption")

    def total_energy_mj(self) -> float | None:
        if not self.energy_counter:
            return None
        values = [self.energy_mj(i) for i in range(len(self.handles))]
        return None if any(v is None for v in values) else float(sum(values))  # type: ignore[arg-type]

    def sample(self, ts: float) -> list[tuple[str, str, float, float]]:
        rows: list[tuple[str, str, float, float]] = []
        nvml = self._nvml
        for index in range(len(self.handles)):
            device = f"gpu{index}"
            util = self._read(index, "util", "nvmlDeviceGetUtilizationRates")
            if util is not None:
                rows.append((device, "utilization_percent", float(util.gpu), ts))
                rows.append((device, "memory_utilization_percent", float(util.memory), ts))
            memory = self._read(index, "memory", "nvmlDeviceGetMemoryInfo")
            if memory is not None:
                rows.append((device, "memory_used_bytes", float(memory.used), ts))
                rows.append((device, "memory_total_bytes", float(memory.total), ts))
            power = self._read(index, "power", "nvmlDeviceGetPowerUsage")
            if power is not None:
                rows.append((device, "power_w", power / 1000.0, ts))
            temperature = self._read(
                index, "temperature", "nvmlDeviceGetTemperature", nvml.NVML_TEMPERATURE_GPU
            )
            if temperature is not None:
                rows.append((device, "temperature_c", float(temperature), ts))
            energy = self.energy_mj(index)
            if energy is not None:
                rows.append((device, "energy_j", energy / 1000.0, ts))
        return rows


def cpu_cores() -> int:
    """Cores this process may use (affinity / cgroup-pinned set), else the host's count."""
    try:
        return len(os.sched_getaffinity(0))
    except (AttributeError, OSError):
        return os.cpu_count() or 1


class HostSampler:
    """psutil samples of this process and the host; I/O as rates between samples."""

    def __init__(self) -> None:
        import psutil

        self.psutil = psutil
        self.process = psutil.Process()
        self.process.cpu_percent(None)
        psutil.cpu_percent(None)
        self._last = time.monotonic()
        self._disk = self._counters(psutil.disk_io_counters)
        self._net = self._counters(psutil.net_io_counters)

    @staticmethod
    def _counters(function: Any) -> Any:
        try:
            return function()
        except Exception:  # no disks in some containers
            return None

    def sample(self, ts: float) -> list[tuple[str, str, float, float]]:
        psutil = self.psutil
        now = time.monotonic()
        elapsed = max(now - self._last, 1e-6)
        self._last = now
        rows = [
            ("process", "rss_bytes", float(self.process.memory_info().rss), ts),
            ("process", "threads", float(self.process.num_threads()), ts),
        ]
        process_cpu, system_cpu = self.process.cpu_percent(None), psutil.cpu_percent(None)
        if elapsed >= 0.02:  # CPU % and rates over a few ms (the first sample) mean nothing
            rows.append(("process", "cpu_percent", process_cpu, ts))
            rows.append(("system", "cpu_percent", system_cpu, ts))
        memory = psutil.virtual_memory()
        rows.append(("system", "memory_used_bytes", float(memory.total - memory.available), ts))
        rows.append(("system", "memory_total_bytes", float(memory.total), ts))
        rows.append(("system", "memory_percent", float(memory.percent), ts))
        disk = self._counters(psutil.disk_io_counters)
        if disk is not None and self._disk is not None and elapsed >= 0.02:
            rows.append(
                (
                    "system",
                    "disk_read_bytes_per_s",
                    (disk.read_bytes - self._disk.read_bytes) / elapsed,
                    ts,
                )
            )
            rows.append(
                (
                    "system",
                    "disk_write_bytes_per_s",
                    (disk.write_bytes - self._disk.write_bytes) / elapsed,
                    ts,
                )
            )
        self._disk = disk
        net = self._counters(psutil.net_io_counters)
        if net is not None and self._net is not None and elapsed >= 0.02:
            rows.append(
                (
                    "system",
                    "net_sent_bytes_per_s",
                    (net.bytes_sent - self._net.bytes_sent) / elapsed,
                    ts,
                )
            )
            rows.append(
                (
                    "system",
                    "net_recv_bytes_per_s",
                    (net.bytes_recv - self._net.bytes_recv) / elapsed,
                    ts,
                )
            )
        self._net = net
        return rows


# -- the sampler ---------------------------------------------------------------------------------


@dataclass
class _Tracked:
    run: Run
    settings: ResourceSettings
    started: float
    ended: float | None = None
    introduced: bool = False
    # energy attributed so far (kWh) and the seconds of the run that were metered
    cpu_kwh: float = 0.0
    gpu_kwh: float = 0.0
    ram_kwh: float = 0.0
    emissions_kg: float = 0.0
    covered_s: float = 0.0
    metered: dict[str, str] = field(default_factory=dict)


class ResourceMonitor:
    """Process-wide sampler and energy meter serving every open run of this process."""

    def __init__(self) -> None:
        self._runs: dict[str, _Tracked] = {}
        self._lock = threading.RLock()
        self._wake = threading.Event()
        self._probed = threading.Event()
        self._thread: threading.Thread | None = None
        self._energy_thread: threading.Thread | None = None
        self._settings: dict[int, ResourceSettings] = {}
        self.interval: float | None = None
        self.gpus: Gpus | None = None
        self.gpu_note: str | None = None
        self.samples_taken = 0
        self.meter: EnergyMeter | None = None

    def settings_for(self, store: Store) -> ResourceSettings:
        settings = self._settings.get(id(store))
        if settings is None:
            settings = self._settings[id(store)] = settings_from(store.settings.raw)
        return settings

    # -- hooks (the caller's thread: keep cheap) --

    def run_started(self, run: Run) -> None:
        settings = self.settings_for(run.store)
        if not settings.enabled:
            return
        with self._lock:
            self._runs[run.id] = _Tracked(run, settings, time.time())
            if self.interval is None:
                self.interval = settings.interval  # one sampler per process: first run's
            if self._thread is None or not self._thread.is_alive():
                self._thread = threading.Thread(
                    target=self._loop, name="ledger-sampler", daemon=True
                )
                self._thread.start()
            if self.meter is not None:
                self.meter.wake()
            if self._energy_thread is None or not self._energy_thread.is_alive():
                self.meter = EnergyMeter(self, settings)
                self._energy_thread = threading.Thread(
                    target=self.meter.loop, name="ledger-energy", daemon=True
                )
                self._energy_thread.start()

    def run_ending(self, run: Run, status: str) -> None:
        with self._lock:
            tracked = self._runs.get(run.id)
            if tracked is None:
                return
            tracked.ended = time.time()
            introduced = tracked.introduced
        if not introduced:
            # Ended before the first sample: wait (once per process, a few ms) for the
            # GPU probe, so the run's GPU count is known rather than unknown.
            self._probed.wait(1.0)
            with self._lock:
                if not tracked.introduced:
                    self._introduce(tracked)
        if self.meter is not None:
            self.meter.settle(final=tracked)
        with self._lock:
            self._runs.pop(run.id, None)

    # -- the sampler thread --

    def _loop(self) -> None:
        try:
            host = HostSampler()
        except Exception as exc:
            self._probed.set()
            self._disable(f"psutil failed ({type(exc).__name__}: {exc})")
            return
        gpus = Gpus()
        if gpus.error:
            self.gpu_note = f"GPU metrics off: {gpus.error}; recording CPU metrics only"
        with self._lock:
            self.gpus = gpus
        self._probed.set()
        while True:
            started = time.monotonic()
            with self._lock:
                tracked = [t for t in self._runs.values() if t.ended is None]
            if not tracked and self._idle():
                return
            try:
                ts = time.time()
                rows = host.sample(ts) + gpus.sample(ts)
                for item in tracked:
                    if not item.introduced:
                        self._introduce(item)
                    item.run._buffer.system.extend(rows)
                self.samples_taken += 1
            except Exception as exc:  # sampling must never take training down
                self._disable(f"sampling failed ({type(exc).__name__}: {exc})")
                return
            interval = self.interval or 1.0
            self._wake.wait(max(0.0, interval - (time.monotonic() - started)))
            self._wake.clear()

    def _idle(self) -> bool:
        # Keep the thread (and its psutil baselines) for a while between runs of a sweep.
        deadline = time.monotonic() + 30.0
        while time.monotonic() < deadline:
            self._wake.wait(0.5)
            self._wake.clear()
            with self._lock:
                if self._runs:
                    return False
        with self._lock:
            if self._runs:
                return False
            self._thread = None
            return True

    def _introduce(self, tracked: _Tracked) -> None:
        """Record the run's hardware and placement once (a ``resources`` cost event)."""
        tracked.introduced = True
        run, settings, gpus = tracked.run, tracked.settings, self.gpus
        names = gpus.names if gpus is not None else []
        facts = {
            "host": HOST,
            "cpu_cores": cpu_cores(),
            "cpu_count": os.cpu_count(),
            # None: the run ended before NVML was probed, so its GPUs are unknown
            "gpu_count": len(names) if gpus is not None else None,
            "gpu_model": names[0] if names else None,
            "gpu_models": names,
            "gpu_energy_counter": bool(gpus and gpus.energy_counter),
            "instance_type": settings.instance_type,
            "instance_source": settings.instance_source,
            "region": settings.region,
            "region_source": settings.region_source,
        }
        _cost_event(run, kind="resources", source="ledger.sampler", attrs=json.dumps(facts))
        if self.gpu_note:
            run._event("runs", event="note", message=self.gpu_note)

    def _disable(self, why: str) -> None:
        log.warning("ledger: system metrics off for this process: %s", why)
        with self._lock:
            for tracked in self._runs.values():
                with contextlib.suppress(Exception):
                    tracked.run._event("runs", event="note", message=f"system metrics off: {why}")
            self.interval = None


# -- energy ---------------------------------------------------------------------------------------


def attribute(start: float, end: float, spans: dict[str, tuple[float, float]]) -> dict[str, float]:
    """Each run's share of a metering window ``[start, end]``.

    Power is taken as constant over the window and split equally among the runs open at
    each instant; time with no run open is nobody's. ``spans`` maps a run id to its
    ``(started, ended)`` (``ended`` may be ``inf``). Shares sum to at most 1.
    """
    length = end - start
    if length <= 0:
        return {}
    points = {start, end}
    for opened, closed in spans.values():
        if start < opened < end:
            points.add(opened)
        if start < closed < end:
            points.add(closed)
    edges = sorted(points)
    shares = dict.fromkeys(spans, 0.0)
    for left, right in itertools.pairwise(edges):
        middle = (left + right) / 2
        open_now = [rid for rid, (o, c) in spans.items() if o <= middle < c]
        if open_now:
            part = (right - left) / length / len(open_now)
            for rid in open_now:
                shares[rid] += part
    return shares


class EnergyMeter:
    """Meters energy in windows and attributes each window to the runs open in it."""

    def __init__(self, monitor: ResourceMonitor, settings: ResourceSettings) -> None:
        self.monitor = monitor
        self.settings = settings
        self.tracker: Any = None
        self.carbon_note: str | None = None
        self.gpus: Gpus | None = None
        self._window_start: float | None = None
        self._gpu_mj: float | None = None
        self.ready_at: float | None = None
        self._lock = threading.RLock()
        self._ready = threading.Event()
        self._wake = threading.Event()

    def loop(self) -> None:
        try:
            self._start()
        except Exception as exc:
            if not threading.main_thread().is_alive():
                # The process ended during the tracker's ~1.5 s start (a short `ledger
                # run`): nothing was left to meter, so this is a note, not a failure.
                self.carbon_note = "the process ended before energy metering had started"
                log.debug("ledger: %s (%s: %s)", self.carbon_note, type(exc).__name__, exc)
            else:
                self.carbon_note = f"energy metering failed to start ({type(exc).__name__}: {exc})"
                log.warning("ledger: %s", self.carbon_note)
        finally:
            self.ready_at = time.time()
            self._ready.set()
        while True:
            self._wake.wait(self.settings.carbon_interval)
            self._wake.clear()
            try:
                if self._window_start is None:
                    self._resume()
                else:
                    self.settle()
            except Exception as exc:
                log.warning("ledger: energy metering stopped (%s: %s)", type(exc).__name__, exc)
                return

    def _start(self) -> None:
        gpus = Gpus()
        self.gpus = gpus if gpus.energy_counter else None
        if self.settings.carbon:
            try:
                self.tracker = _new_tracker(self.settings)
            except ImportError:
                self.carbon_note = "codecarbon is not installed: CPU and RAM energy not estimated"
        else:
            self.carbon_note = "codecarbon switched off: CPU and RAM energy not estimated"
        with self._lock:
            if self.tracker is not None:
                self.tracker.start_task("ledger-window")
            self._gpu_mj = self.gpus.total_energy_mj() if self.gpus else None
            self._window_start = time.time()

    def _resume(self) -> None:
        # Metering pauses while no run is open (codecarbon's power thread stops with the
        # task); a run start wakes this thread to open a new window.
        with self.monitor._lock:
            if not any(t.ended is None for t in self.monitor._runs.values()):
                return
        with self._lock:
            if self._window_start is None:
                if self.tracker is not None:
                    self.tracker.start_task("ledger-window")
                self._gpu_mj = self.gpus.total_energy_mj() if self.gpus else None
                self._window_start = time.time()

    def wake(self) -> None:
        """Ask the metering thread to open a window if it is paused (cheap)."""
        if self._window_start is None:
            self._wake.set()

    def settle(self, final: _Tracked | None = None) -> None:
        """Close the current window, attribute it, and write each run's figures so far."""
        if not self._ready.is_set() or self._window_start is None:
            if final is not None:
                why = "still starting" if not self._ready.is_set() else "paused"
                self._emit(final, note=f"energy metering was {why} when the run ended")
            return
        with self._lock:
            self._settle(final)

    def _settle(self, final: _Tracked | None) -> None:
        if self._window_start is None:
            return
        now = time.time()
        window_start = self._window_start
        with self.monitor._lock:
            tracked = list(self.monitor._runs.values())
        keep_going = any(t.ended is None for t in tracked)
        data = None
        if self.tracker is not None:
            data = self.tracker.stop_task()
            if keep_going:
                self.tracker.start_task("ledger-window")
        gpu_mj = self.gpus.total_energy_mj() if self.gpus else None
        gpu_measured_kwh = (
            (gpu_mj - self._gpu_mj) / _MJ_PER_KWH
            if gpu_mj is not None and self._gpu_mj is not None
            else None
        )
        self._gpu_mj = gpu_mj
        self._window_start = now if keep_going else None
        spans = {
            t.run.id: (t.started, t.ended if t.ended is not None else float("inf")) for t in tracked
        }
        shares = attribute(window_start, now, spans)
        cpu = float(getattr(data, "cpu_energy", 0.0) or 0.0) if data is not None else None
        ram = float(getattr(data, "ram_energy", 0.0) or 0.0) if data is not None else None
        gpu_cc = float(getattr(data, "gpu_energy", 0.0) or 0.0) if data is not None else None
        gpu = gpu_measured_kwh if gpu_measured_kwh is not None else gpu_cc
        total_cc = float(getattr(data, "energy_consumed", 0.0) or 0.0) if data else 0.0
        emissions_cc = float(getattr(data, "emissions", 0.0) or 0.0) if data else 0.0
        intensity = emissions_cc / total_cc if total_cc > 0 and self.settings.country else None
        for item in tracked:
            share = shares.get(item.run.id, 0.0)
            overlap = max(
                0.0,
                min(now, item.ended or now) - max(window_start, item.started),
            )
            item.covered_s += overlap
            item.cpu_kwh += (cpu or 0.0) * share
            item.ram_kwh += (ram or 0.0) * share
            item.gpu_kwh += (gpu or 0.0) * share
            window_total = (cpu or 0.0) + (ram or 0.0) + (gpu or 0.0)
            if intensity is not None:
                item.emissions_kg += window_total * share * intensity
            item.metered = self._sources(data is not None, gpu_measured_kwh is not None)
            metered = data is not None or gpu_measured_kwh is not None
            if (final is None or item is final) and metered:
                self._emit(item)
        if final is not None and final not in tracked:
            self._emit(final)

    def _sources(self, codecarbon: bool, nvml: bool) -> dict[str, str]:
        sources: dict[str, str] = {}
        if codecarbon:
            cpu_mode = _cpu_mode(self.tracker)
            sources["cpu"] = (
                f"measured:codecarbon:{cpu_mode}"
                if cpu_mode in ("intel_rapl", "windows_emi")
                else f"estimated:codecarbon:{cpu_mode or 'tdp'}"
            )
            sources["ram"] = "estimated:codecarbon"
            if not nvml and self.monitor.gpus is not None and self.monitor.gpus.handles:
                sources["gpu"] = "estimated:codecarbon:nvml-power"
        if nvml:
            sources["gpu"] = "measured:nvml:energy-counter"
        return sources

    def _emit(self, item: _Tracked, note: str | None = None) -> None:
        sources = item.metered
        has_cpu = "cpu" in sources
        has_gpu = "gpu" in sources
        seconds = item.covered_s
        energy = (
            (item.cpu_kwh if has_cpu else 0.0)
            + (item.ram_kwh if has_cpu else 0.0)
            + (item.gpu_kwh if has_gpu else 0.0)
        )
        notes = [n for n in (note, self.carbon_note) if n]
        if not self.settings.country and has_cpu:
            notes.append(
                "no [carbon] country_iso_code configured: emissions from catalog intensity"
            )
        attrs = {
            "host": HOST,
            "sources": sources,
            "covered_s": round(seconds, 3),
            "cpu_power_w": _watts(item.cpu_kwh, seconds) if has_cpu else None,
            "ram_power_w": _watts(item.ram_kwh, seconds) if has_cpu else None,
            "gpu_power_w": _watts(item.gpu_kwh, seconds) if has_gpu else None,
            "country_iso_code": self.settings.country,
            "carbon_region": self.settings.carbon_region,
            "final": item.ended is not None,
            "notes": notes,
        }
        _cost_event(
            item.run,
            kind="energy",
            source="+".join(sorted({s.split(":")[1] for s in sources.values()})) or "none",
            energy_kwh=energy if sources else None,
            cpu_energy_kwh=item.cpu_kwh if has_cpu else None,
            gpu_energy_kwh=item.gpu_kwh if has_gpu else None,
            ram_energy_kwh=item.ram_kwh if has_cpu else None,
            emissions_kg=item.emissions_kg if sources and self.settings.country else None,
            measured=bool(sources) and all(s.startswith("measured") for s in sources.values()),
            attrs=json.dumps(attrs),
        )


def _cost_event(run: Run, **row: Any) -> None:
    # Run._event takes the event kind positionally; cost rows have a column named kind.
    row["run_id"] = run.id
    run._writer.add_event("costs", run.project, row)


def _watts(kwh: float, seconds: float) -> float | None:
    return round(kwh * _J_PER_KWH / seconds, 3) if seconds > 0 else None


def _cpu_mode(tracker: Any) -> str | None:
    for hardware in getattr(tracker, "_hardware", []) or []:
        if type(hardware).__name__ == "CPU":
            return getattr(hardware, "_mode", None)
    return None


def _new_tracker(settings: ResourceSettings) -> Any:
    """One offline tracker: no geo-IP or cloud lookups, no files, quiet logs."""
    from codecarbon import OfflineEmissionsTracker

    logging.getLogger("codecarbon").setLevel(logging.ERROR)
    kwargs: dict[str, Any] = {
        "country_iso_code": settings.country or "USA",
        "save_to_file": False,
        "save_to_api": False,
        "save_to_logger": False,
        "log_level": "error",
        "tracking_mode": "machine",
    }
    if settings.carbon_region:
        kwargs["region"] = settings.carbon_region
    return OfflineEmissionsTracker(**kwargs)


# -- installation ---------------------------------------------------------------------------------

_monitor: ResourceMonitor | None = None


def monitor() -> ResourceMonitor:
    """This process's monitor (created on first use)."""
    global _monitor
    if _monitor is None:
        _monitor = ResourceMonitor()
    return _monitor


def _on_start(run: Run) -> None:
    monitor().run_started(run)


def _on_end(run: Run, status: str) -> None:
    if _monitor is not None:
        _monitor.run_ending(run, status)


def install() -> None:
    """Follow every run of this process (called by ``ledger.hooks`` at the first run)."""
    hooks.on_run_start(_on_start)
    hooks.on_run_end(_on_end)


def _after_fork_in_child() -> None:
    global _monitor
    _monitor = None  # threads do not survive fork; the child builds its own


if hasattr(os, "register_at_fork"):
    os.register_at_fork(after_in_child=_after_fork_in_child)
