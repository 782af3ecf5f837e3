"""Latency on a real Android phone: push the model and TFLite's ``benchmark_model`` over adb, run, parse.

``benchmark_model`` is the prebuilt binary from the TFLite performance docs (e.g.
``android_aarch64_benchmark_model``); edgeopt does not ship it, the user gives its path. Its output
(documented format, optionally prefixed by ``INFO:`` or a logcat tag) looks like::

    count=50 first=1249964 curr=1240143 min=1238588 max=1252566 avg=1.24027e+06 std=2565 p5=1238753 median=1239807 p95=1247415
    Inference timings in us: Init: 5579, First inference: 1357602, Warmup (avg): 1.3576e+06, Inference (avg): 1.24027e+06
    Memory footprint delta from the start of the tool (MB): init=6.36328 overall=109.832
"""
from __future__ import annotations

import re
import shutil
import subprocess
from pathlib import Path

from edgeopt.bench.results import LatencyResult
from edgeopt.tflite.flatbuffer import load_model_bytes

_NUM = r"([-+]?\d+(?:\.\d+)?(?:[eE][-+]?\d+)?)"
_TIMINGS = re.compile(
    rf"Inference timings in us: Init: {_NUM}, First inference: {_NUM}, Warmup \(avg\): {_NUM}, Inference \(avg\): {_NUM}"
)
_STATS = re.compile(r"count=(\d+)((?: \w+=" + _NUM + r")+)")
_MEMORY = re.compile(rf"(?:Memory footprint delta from the start of the tool|Peak memory footprint) \(MB\): init={_NUM} overall={_NUM}")
_PEAK_MONITOR = re.compile(rf"Overall peak memory footprint \(MB\) via periodic monitoring: {_NUM}")
_PARAM = re.compile(r"(Num threads|Use xnnpack|Min warmup runs|Graph): \[([^\]]*)\]")


class DeviceUnavailableError(RuntimeError):
    """No adb, no connected device, or the device did not run benchmark_model; the message says which."""


def parse_benchmark_output(
    text: str, *, model: str = "", threads: int = 1, xnnpack: bool = True, warmup_runs: int = 1, device: str = "Android device"
) -> LatencyResult:
    """Turn ``benchmark_model`` output into a :class:`LatencyResult` (microseconds -> milliseconds).

    Uses the last ``count=... avg=...`` line (the timed runs; the warm-up line comes first) and the
    ``Inference timings`` summary. Parameters the tool echoes (threads, XNNPACK, warm-up runs, graph)
    override the given ones. Statistics the tool does not print (p90; median on old versions) are None.
    """
    timings = _TIMINGS.search(text)
    stats = [dict(re.findall(r"(\w+)=" + _NUM, m.group(0))) for m in _STATS.finditer(text)]
    stats = [s for s in stats if "avg" in s]
    if timings is None and not stats:
        tail = "\n".join(text.strip().splitlines()[-5:])
        raise ValueError(f"no benchmark_model results (no 'Inference timings in us' or 'count=... avg=...' line) in its output; last lines:\n{tail}")
    s = {k: float(v) for k, v in stats[-1].items()} if stats else {}
    init_us, first_us, warm_us, avg_us = (float(v) for v in timings.groups()) if timings else (None, s.get("first"), None, s.get("avg"))
    params = dict(_PARAM.findall(text))
    mem = _MEMORY.search(text)
    peak = _PEAK_MONITOR.search(text)

    def ms(v):
        return None if v is None else v / 1000.0

    return LatencyResult(
        model=params.get("Graph", model) or model,
        threads=int(params.get("Num threads", threads)),
        xnnpack=params.get("Use xnnpack", "1" if xnnpack else "0").lower() in ("1", "true"),
        runs=int(s.get("count", 0)),
        warmup_runs=int(params.get("Min warmup runs", warmup_runs)),
        init_ms=ms(init_us), first_ms=ms(first_us), warmup_ms=ms(warm_us),
        median_ms=ms(s.get("median")), p90_ms=None, p95_ms=ms(s.get("p95")),
        mean_ms=ms(avg_us), std_ms=ms(s.get("std")), min_ms=ms(s.get("min")), max_ms=ms(s.get("max")),
        init_mem_mb=float(mem.group(1)) if mem else None,
        peak_mem_mb=float(peak.group(1)) if peak else (float(mem.group(2)) if mem else None),
        inputs="random", runtime="benchmark_model (TFLite C++ tool)", device=device,
    )


def _adb(adb: str, serial: str | None, *args: str, timeout: float = 120) -> str:
    cmd = [adb, *(["-s", serial] if serial else []), *args]
    try:
        done = subprocess.run(cmd, capture_output=True, text=True, timeout=timeout)
    except subprocess.TimeoutExpired as err:
        raise DeviceUnavailableError(f"`{' '.join(cmd)}` did not finish in {timeout:.0f} s") from err
    if done.returncode != 0:
        raise DeviceUnavailableError(f"`{' '.join(cmd)}` failed ({done.returncode}): {(done.stderr or done.stdout).strip()}")
    return done.stdout + done.stderr


def connected_devices(adb: str = "adb") -> dict[str, str]:
    """Serial -> state ('device', 'unauthorized', 'offline', ...) of what ``adb devices`` lists."""
    out = _adb(_find_adb(adb), None, "devices")
    rows = [line.split() for line in out.splitlines()[1:] if line.strip() and not line.startswith("*")]
    return {r[0]: r[1] for r in rows if len(r) >= 2}


def _find_adb(adb: str) -> str:
    found = shutil.which(adb)
    if not found:
        raise DeviceUnavailableError(
            f"adb ({adb!r}) is not on PATH, so no phone can be reached. Install Android SDK platform-tools, "
            "enable USB debugging on the phone, connect it and check `adb devices`."
        )
    return found


def _pick_device(adb: str, serial: str | None) -> str:
    devices = connected_devices(adb)
    ready = [s for s, state in devices.items() if state == "device"]
    if serial:
        if devices.get(serial) != "device":
            raise DeviceUnavailableError(f"device {serial!r} is not ready (adb devices: {devices or 'none'})")
        return serial
    if not ready:
        raise DeviceUnavailableError(
            f"no Android device connected and authorized (adb devices: {devices or 'none'}). Connect a phone with USB "
            "debugging on and accept its prompt."
        )
    if len(ready) > 1:
        raise DeviceUnavailableError(f"several devices connected ({', '.join(ready)}); choose one with --serial")
    return ready[0]


def measure_latency_adb(
    model,
    benchmark_binary,
    *,
    serial: str | None = None,
    threads: int = 1,
    runs: int = 50,
    min_seconds: float = 1.0,
    warmup: int = 1,
    xnnpack: bool = True,
    adb: str = "adb",
    remote_dir: str = "/data/local/tmp",
    timeout: float = 600,
) -> LatencyResult:
    """Latency of a .tflite file on a connected Android device with ``benchmark_model`` (same settings as
    :func:`edgeopt.bench.measure_latency`). Raises :class:`DeviceUnavailableError` without adb or device.
    """
    model_path = Path(model)
    load_model_bytes(model_path)  # a broken file fails here, not on the phone
    binary = Path(benchmark_binary)
    if not binary.is_file():
        raise FileNotFoundError(
            f"benchmark_model binary {str(binary)!r} not found; download the prebuilt android_aarch64_benchmark_model "
            "from the TFLite performance measurement docs and pass its path"
        )
    adb = _find_adb(adb)
    serial = _pick_device(adb, serial)
    remote_model, remote_tool = f"{remote_dir}/edgeopt_{model_path.name}", f"{remote_dir}/edgeopt_benchmark_model"
    _adb(adb, serial, "push", str(model_path), remote_model, timeout=timeout)
    _adb(adb, serial, "push", str(binary), remote_tool, timeout=timeout)
    _adb(adb, serial, "shell", "chmod", "755", remote_tool)
    flags = [f"--graph={remote_model}", f"--num_threads={threads}", f"--num_runs={runs}", f"--min_secs={min_seconds}",
             f"--warmup_runs={warmup}", f"--use_xnnpack={'true' if xnnpack else 'false'}"]
    out = _adb(adb, serial, "shell", remote_tool, *flags, timeout=timeout)
    name = _adb(adb, serial, "shell", "getprop", "ro.product.model").strip()
    abi = _adb(adb, serial, "shell", "getprop", "ro.product.cpu.abi").strip()
    result = parse_benchmark_output(out, model=str(model_path), threads=threads, xnnpack=xnnpack, warmup_runs=warmup, device=f"{name} ({abi}, adb {serial})")
    from dataclasses import replace

    return replace(result, model=str(model_path))
