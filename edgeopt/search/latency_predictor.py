"""How well a latency table predicts whole networks: random architectures of the space, exported and timed whole,
against the table's prediction.

The prediction of an architecture is :meth:`OpCostTable.predict` of :meth:`LatencyTable.cost_table`: the parts' sum
with the per-inference overhead counted once (the overhead comes from the table's probe, which holds no block of the
space, so nothing here is fitted to the architectures it is checked on). The plain sum of the parts (overhead
counted once per part) is reported beside it. Networks are timed by the same kind of runner on the same device
as the table, interleaved (every network at every thread count once per round, odd rounds backwards); a network's
latency is the median of its round medians. Errors are relative, ``|predicted - measured| / measured``.

A table is measured at one time and the networks at another; on a shared machine the load between the two moves
every latency alike (a busy 2-core machine: 20-30%), which is an error of the table on that machine but not of the
additive model. With ``parts_dir`` (the table's exported parts) the parts the networks use are timed again in the
same interleaved rounds as the networks, and the prediction from those (``same_round_ms``, the same overhead model)
is reported too: the model's own error, free of the drift. On a quiet machine or a phone the two agree.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import time
from dataclasses import asdict, dataclass, field, replace
from functools import partial
from pathlib import Path
from typing import Callable

import numpy as np

from edgeopt.bench.latency import interleave
from edgeopt.io import write_atomic
from edgeopt.progress import bar
from edgeopt.search.latency_table import Converter, LatencyRunner, LatencyTable, LiteRTRunner, export_part, part_file, same_runner, setting_key
from edgeopt.search.nas_space import Architecture, NasSpace, build_network, random_architecture

__all__ = ["PredictionRow", "PredictorCheck", "check_predictor", "short_op"]


def short_op(op: str) -> str:
    """A compact operation name for tables: ``ir_k5_e6_se0.25`` -> ``k5e6se``, ``skip`` -> ``skip``."""
    return op.replace("ir_", "").replace("_se0.25", "se").replace("_", "")


@dataclass(frozen=True)
class PredictionRow:
    """One network at one thread count: its operations, the table's prediction (ms), the plain sum of its parts
    (ms), its measured latency (ms, median of the rounds) and the prediction from its parts timed in the same rounds
    (ms; None when they were not)."""

    architecture: tuple[str, ...]
    threads: int
    predicted_ms: float
    sum_ms: float
    measured_ms: float
    same_round_ms: float | None = None

    @property
    def error(self) -> float:
        """Relative error of the prediction, ``|predicted - measured| / measured``."""
        return abs(self.predicted_ms - self.measured_ms) / self.measured_ms

    @property
    def sum_error(self) -> float:
        """Relative error of the plain sum of the parts."""
        return abs(self.sum_ms - self.measured_ms) / self.measured_ms

    @property
    def same_round_error(self) -> float | None:
        """Relative error of the prediction from parts timed in the same rounds (None when they were not)."""
        return None if self.same_round_ms is None else abs(self.same_round_ms - self.measured_ms) / self.measured_ms


@dataclass
class PredictorCheck:
    """Predicted against measured latency of random networks at one precision. ``overhead_ms``: the table's
    per-inference overhead by thread count; ``device``, ``runtime``, ``timing``, ``host``: where and how everything
    was timed; ``rounds`` of interleaved timing; ``seed`` of the architecture draw; ``export_seconds`` and
    ``timing_seconds``: wall time exporting the networks and timing them (and the re-timed parts)."""

    precision: str
    rows: list[PredictionRow]
    overhead_ms: dict[int, float]
    device: str
    runtime: str
    timing: str
    host: str
    rounds: int
    seed: int
    threads: tuple[int, ...] = field(default=())
    export_seconds: float = 0.0
    timing_seconds: float = 0.0

    def summary(self) -> list[dict]:
        """Per thread count: networks, median and max relative error of the prediction, of the plain sum and (None
        when not timed) of the same-round prediction, the overhead, median measured and predicted ms."""
        out = []
        for t in self.threads:
            rows = [r for r in self.rows if r.threads == t]
            errors, sums = [r.error for r in rows], [r.sum_error for r in rows]
            same = [r.same_round_error for r in rows if r.same_round_error is not None]
            out.append({"threads": t, "networks": len(rows), "median_error": float(np.median(errors)), "max_error": float(np.max(errors)),
                        "sum_median_error": float(np.median(sums)), "sum_max_error": float(np.max(sums)),
                        "same_round_median_error": float(np.median(same)) if same else None, "same_round_max_error": float(np.max(same)) if same else None,
                        "overhead_ms": self.overhead_ms[t], "median_measured_ms": float(np.median([r.measured_ms for r in rows])),
                        "median_predicted_ms": float(np.median([r.predicted_ms for r in rows]))})
        return out

    def to_dict(self) -> dict:
        out = asdict(self)
        out["rows"] = [{**asdict(r), "architecture": list(r.architecture), "error": r.error, "sum_error": r.sum_error,
                        "same_round_error": r.same_round_error} for r in self.rows]
        out["overhead_ms"] = {str(k): v for k, v in self.overhead_ms.items()}
        out["threads"] = list(self.threads)
        out["summary"] = self.summary()
        return out

    def to_markdown(self) -> str:
        """Header (device, runtime, timing, host CPU and flags), the error summary per thread count, then every network."""
        lines = [f"Device: {self.device}; {self.runtime}.", f"Timing: {self.timing}; median of {self.rounds} interleaved rounds.",
                 f"Host: {self.host}.", "",
                 f"{len(self.rows) // max(len(self.threads), 1)} random networks (seed {self.seed}), {self.precision}. Table: the stored table's "
                 "parts with the per-inference overhead (probe) counted once. Same rounds: the same model on the parts timed again in the "
                 "networks' rounds. Plain sum: the stored parts, overhead counted once per part. Error: |predicted - measured| / measured.", "",
                 "| threads | networks | overhead ms | median measured ms | table: median error | table: max error | same rounds: median error "
                 "| same rounds: max error | plain sum: median error | plain sum: max error |",
                 "|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
        for s in self.summary():
            lines.append(f"| {s['threads']} | {s['networks']} | {s['overhead_ms']:.4f} | {s['median_measured_ms']:.4f} | {_pct(s['median_error'])} | "
                         f"{_pct(s['max_error'])} | {_pct(s['same_round_median_error'])} | {_pct(s['same_round_max_error'])} | "
                         f"{_pct(s['sum_median_error'])} | {_pct(s['sum_max_error'])} |")
        lines += ["", "| # | threads | operations | measured ms | table ms | error | same rounds ms | error | plain sum ms |",
                  "|---:|---:|---|---:|---:|---:|---:|---:|---:|"]
        for i, r in enumerate(self.rows):
            ops = " ".join(short_op(op) for op in r.architecture)
            again = "-" if r.same_round_ms is None else f"{r.same_round_ms:.4f}"
            lines.append(f"| {i // len(self.threads)} | {r.threads} | {ops} | {r.measured_ms:.4f} | {r.predicted_ms:.4f} | {r.error:.1%} | {again} | "
                         f"{_pct(r.same_round_error)} | {r.sum_ms:.4f} |")
        return "\n".join(lines) + "\n"


def _pct(value: float | None) -> str:
    return "-" if value is None else f"{value:.1%}"


def _network_file(folder, table: LatencyTable, arch: Architecture, precision: str) -> Path:
    """Where a network is kept: named by a hash of the space, input shape, classes and architecture."""
    blob = json.dumps([table.space.to_dict(), list(table.input_shape), table.classes, list(arch.choices)], sort_keys=True)
    return Path(folder) / f"net_{hashlib.sha256(blob.encode()).hexdigest()[:16]}.{precision}.tflite"


def _distinct_architectures(space: NasSpace, count: int, seed: int) -> list[Architecture]:
    rng = np.random.default_rng(seed)
    archs: dict[tuple[str, ...], Architecture] = {}
    for _ in range(count * 100):
        arch = random_architecture(space, rng)
        archs.setdefault(arch.choices, arch)
        if len(archs) == count:
            break
    return list(archs.values())


def check_predictor(table: LatencyTable, networks: int = 30, *, precision: str = "int8", threads: tuple[int, ...] | None = None,
                    rounds: int = 5, seed: int = 0, runner: LatencyRunner | None = None, converter: Converter | None = None,
                    parts_dir: str | os.PathLike | None = None, networks_dir: str | os.PathLike | None = None,
                    log: Callable[[str], None] | None = None) -> PredictorCheck:
    """Draw ``networks`` distinct random architectures of the table's space (``seed``), export each whole network at
    ``precision`` (``converter`` as in :func:`measure_table`), time them interleaved for ``rounds`` rounds at each of
    ``threads`` (None: the table's) with ``runner`` (None: :class:`LiteRTRunner`; it must be the kind and device
    that measured the table) and compare with the table's prediction. With ``parts_dir`` (the table's exported parts,
    :func:`~edgeopt.search.latency_table.parts_dir`) the parts they use are timed in the same rounds too (see the
    module docstring). With ``networks_dir`` the exported networks are kept there and reused by a later call.
    Returns a :class:`PredictorCheck`."""
    runner = runner or LiteRTRunner()
    converter = converter or export_part
    log = log or (lambda line: print(line, file=sys.stdout, flush=True))
    threads = tuple(threads or table.config.threads)
    if networks < 1 or rounds < 1:
        raise ValueError(f"networks and rounds must be >= 1, got {networks} and {rounds}")
    described = runner.describe() | {"name": runner.name}
    if same_runner(table.runner, described) is not None:
        raise ValueError(f"the table {same_runner(table.runner, described)}: check it with the same runner, device and timing")
    start = time.perf_counter()
    archs = _distinct_architectures(table.space, networks, seed)
    rng = np.random.default_rng(seed)
    calls = {}
    with bar(total=len(archs), desc="predictor check: exporting networks", unit="network") as shown:
        for i, arch in enumerate(archs):
            representative = rng.uniform(-1, 1, (table.config.calibration_samples, *table.input_shape)).astype(np.float32)
            kept = _network_file(networks_dir, table, arch, precision) if networks_dir is not None else None
            if kept is not None and kept.exists():
                data = kept.read_bytes()
            else:
                data = converter(build_network(table.space, arch, table.input_shape, table.classes, name=f"net{i}"), precision, representative)
                if kept is not None:
                    write_atomic(kept, data, overwrite=True)
            calls.update({("network", i, t): partial(runner, data, t) for t in threads})
            shown.update(1)
    exported = time.perf_counter() - start
    parts = sorted({part for arch in archs for part in table.parts_of(arch)}) if parts_dir is not None else []
    for part in parts:
        data = part_file(parts_dir, part, precision).read_bytes()
        calls.update({("part", part, t): partial(runner, data, t) for t in threads})
    log(f"predictor check: exported {len(archs)} networks in {exported:.0f} s; timing them{f' and {len(parts)} parts' if parts else ''}, "
        f"{rounds} rounds")
    times = interleave(calls, rounds, alternate=True, progress="predictor check: timing")
    again = replace(table, measurements={part: {setting_key(precision, t): times[("part", part, t)] for t in threads} for part in parts})
    rows = [PredictionRow(arch.choices, t, table.predict(arch, precision, t), table.predict(arch, precision, t, overhead=False),
                          float(np.median(times[("network", i, t)])), again.predict(arch, precision, t) if parts else None)
            for i, arch in enumerate(archs) for t in threads]
    return PredictorCheck(precision, rows, {t: table.overhead_ms(precision, t) for t in threads}, described.get("device", ""),
                          described.get("runtime", ""), described.get("timing", ""), table.machine.get("describe", ""), rounds, seed, threads,
                          round(exported, 3), round(time.perf_counter() - start - exported, 3))
