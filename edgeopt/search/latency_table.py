"""Per-operator latency lookup table of a search space, measured on the LiteRT interpreter or on a phone over adb.

Every *part* of the space is built alone at its input shape (:func:`edgeopt.search.nas_cost.part_layers`: the stem,
each candidate operation of each block, ``block3a/ir_k5_e6``, and the head with the classifier), exported (int8 with
int8 input and output, so no QUANTIZE/DEQUANTIZE op at its ends; float32) and timed at each thread count. Timing
is interleaved: each round measures every part at every setting once (odd rounds in reverse order), so the load of
a shared machine hits all parts alike; a part's latency is the median over rounds of the per-round values.

The measuring is a pluggable *runner*, ``runner(model_bytes, threads) -> ms`` with ``name`` and
``describe()``: :class:`LiteRTRunner` (this machine, :func:`edgeopt.bench.measure_latency`) or :class:`AdbRunner`
(a phone, :func:`edgeopt.bench.measure_latency_adb`), so the same table is measured again on a device. Each reports
the median of a measurement's runs or their minimum (``statistic``: steadier where other processes share the CPU).
The table is a JSON file; its header records the runner's device, runtime and timing, the host's CPU and SIMD flags,
and the settings; it is continued or checked only with a runner of the same kind, device and timing.
It is saved every few seconds and after every round, and the exported parts are kept beside it
(``<table>.models/``): :func:`measure_table` on an existing file continues it (no part exported or timed twice).

**Per-inference overhead.** Each timed part pays once what a whole network pays once for all its parts (the
interpreter's invoke, the delegate's dispatch, waking the thread pool), so the plain sum of ``k`` parts counts it
``k - 1`` times too often. Model: ``T(part) = o + c(part)`` and ``T(network) = o + sum c``. ``o`` is measured on a
probe that holds no block of the space: a 1x1 convolution block ``P`` at the head's input shape, timed alone
(``T1 = o + c``) and as ``n = probe_copies`` copies in a row (``Tn = o + n c``): ``o = (n T1 - Tn) / (n - 1)``.
It is calibrated on no architecture of the space, so a predictor check on random architectures is never fitted to
them. :meth:`LatencyTable.cost_table` stores ``T(part) - o`` per operation (0 for ``skip``, clamped at 0 where
noise makes a tiny part faster than ``o``) and ``T(stem) + T(head) - o`` as the fixed part, so
``OpCostTable.predict`` gives ``o + sum c`` = the sum of the parts minus ``(k - 1) o``. Fusion across blocks is not
modelled: parts never fuse with their neighbours here; :mod:`edgeopt.search.latency_predictor` measures how far
the sum is from whole networks.
"""
from __future__ import annotations

import hashlib
import json
import os
import sys
import tempfile
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, ClassVar, Protocol

import numpy as np

from edgeopt.bench.adb import measure_latency_adb
from edgeopt.bench.latency import litert_version, measure_latency
from edgeopt.bench.machine import this_machine
from edgeopt.config import Config
from edgeopt.export import convert
from edgeopt.io import write_atomic
from edgeopt.models import BlockSpec, apply_block
from edgeopt.progress import bar
from edgeopt.search.nas_cost import OpCostTable, part_layers, part_model
from edgeopt.search.nas_space import SKIP, Architecture, NasSpace

__all__ = ["AdbRunner", "FORMAT", "LATENCY_TABLE_ENV", "LatencyRunner", "LatencyTable", "LatencyTableConfig", "LiteRTRunner", "STATISTICS",
           "export_part", "measure_table", "part_file", "parts_dir", "same_runner", "setting_key", "table_from_environment"]

FORMAT = "edgeopt.latency_table/1"
LATENCY_TABLE_ENV = "EDGEOPT_LATENCY_TABLE"  # the file the ``latency`` cost model reads
PRECISIONS = ("int8", "float32")
PROBE = "probe"
_SAVE_SECONDS = 5.0  # at most this much measuring is lost when a run is killed


def setting_key(precision: str, threads: int) -> str:
    """``"int8@1"``: a setting's key in the table (precision at a thread count)."""
    return f"{precision}@{threads}"


@dataclass(frozen=True)
class LatencyTableConfig(Config):
    """What is measured: ``precisions`` (int8, float32), ``threads`` (thread counts), ``rounds`` (interleaved rounds;
    a part's latency is the median of its round medians), ``probe_copies`` (n of the overhead probe, >= 2),
    ``calibration_samples`` (random inputs that calibrate each int8 export; latency does not depend on them), ``seed``."""

    precisions: tuple[str, ...] = PRECISIONS
    threads: tuple[int, ...] = (1, 4)
    rounds: int = 3
    probe_copies: int = 4
    calibration_samples: int = 8
    seed: int = 0

    def __post_init__(self):
        object.__setattr__(self, "precisions", tuple(self.precisions))
        object.__setattr__(self, "threads", tuple(self.threads))
        if not self.precisions or any(p not in PRECISIONS for p in self.precisions) or len(set(self.precisions)) != len(self.precisions):
            raise ValueError(f"precisions must list some of {', '.join(PRECISIONS)} once each, got {list(self.precisions)}")
        if not self.threads or any(t < 1 for t in self.threads) or len(set(self.threads)) != len(self.threads):
            raise ValueError(f"threads must list thread counts >= 1 once each (e.g. [1, 4]), got {list(self.threads)}")
        if self.rounds < 1:
            raise ValueError(f"rounds must be >= 1, got {self.rounds}")
        if self.probe_copies < 2:
            raise ValueError(f"probe_copies must be >= 2 (the overhead is the intercept of 1 and n copies), got {self.probe_copies}")
        if self.calibration_samples < 1:
            raise ValueError(f"calibration_samples must be >= 1, got {self.calibration_samples}")

    def settings(self) -> list[tuple[str, int]]:
        return [(p, t) for p in self.precisions for t in self.threads]

    def _same_measurement(self) -> dict:
        """Every field but ``rounds`` (a table measured with other fields cannot be continued; more rounds can)."""
        out = self.to_dict()
        out.pop("rounds")
        return out


# ---- runners ----------------------------------------------------------------------------------------------


class LatencyRunner(Protocol):
    """Times one exported part: ``runner(model_bytes, threads)`` -> latency in ms of one measurement (its ``statistic`` of the runs)."""

    name: str

    def describe(self) -> dict[str, str]:
        """``device``, ``runtime`` and ``timing`` (how each measurement is made), for the table's header."""

    def __call__(self, model: bytes, threads: int) -> float: ...


STATISTICS = ("median", "min")  # what a runner reports of one measurement's runs


def _check_statistic(statistic: str) -> None:
    if statistic not in STATISTICS:
        raise ValueError(f"statistic must be one of {', '.join(STATISTICS)} (min: the uncontended latency, steadier on a shared machine), "
                         f"got {statistic!r}")


@dataclass(frozen=True)
class LiteRTRunner:
    """This machine's LiteRT interpreter (:func:`edgeopt.bench.measure_latency`: at least ``runs`` runs and
    ``min_seconds`` per measurement after ``warmup`` runs; XNNPACK unless ``xnnpack`` is False). ``statistic``: the
    median of the runs, or their minimum (the run no other process delayed: on a busy shared machine the median of a
    0.3 ms network moved by up to 15% from one timing to the next, the minimum by about 3%)."""

    runs: int = 20
    min_seconds: float = 0.1
    warmup: int = 2
    xnnpack: bool = True
    statistic: str = "median"
    name: ClassVar[str] = "litert"

    def __post_init__(self):
        _check_statistic(self.statistic)

    def describe(self) -> dict[str, str]:
        return {"device": this_machine().describe(), "runtime": f"ai-edge-litert {litert_version()} (Python interpreter)",
                "timing": f"invoke() only, {self.statistic} of >= {self.runs} runs and >= {self.min_seconds} s after {self.warmup} warm-up runs, "
                          f"XNNPACK {'on' if self.xnnpack else 'off'}, batch 1"}

    def __call__(self, model: bytes, threads: int) -> float:
        result = measure_latency(model, threads=threads, runs=self.runs, min_seconds=self.min_seconds, warmup=self.warmup, xnnpack=self.xnnpack)
        return getattr(result, f"{self.statistic}_ms")


@dataclass(frozen=True)
class AdbRunner:
    """A phone over adb with TFLite's ``benchmark_model`` (:func:`edgeopt.bench.measure_latency_adb`); each part is
    written to ``workdir`` (None: a temporary folder) and pushed. ``serial`` picks the phone (None: the one connected)."""

    benchmark_binary: str
    serial: str | None = None
    runs: int = 50
    min_seconds: float = 0.5
    warmup: int = 2
    xnnpack: bool = True
    adb: str = "adb"
    workdir: str | None = None
    statistic: str = "median"
    name: ClassVar[str] = "adb"

    def __post_init__(self):
        _check_statistic(self.statistic)

    def describe(self) -> dict[str, str]:
        return {"device": f"Android device over adb ({'serial ' + self.serial if self.serial else 'the one connected'})",
                "runtime": "benchmark_model (TFLite C++ tool)",
                "timing": f"{self.statistic} of >= {self.runs} runs and >= {self.min_seconds} s after {self.warmup} warm-up runs, "
                          f"XNNPACK {'on' if self.xnnpack else 'off'}"}

    def __call__(self, model: bytes, threads: int) -> float:
        folder = Path(self.workdir or tempfile.gettempdir())
        path = folder / f"edgeopt_part_{hashlib.sha256(model).hexdigest()[:16]}.tflite"
        if not path.exists():
            write_atomic(path, model, overwrite=True)
        result = measure_latency_adb(path, self.benchmark_binary, serial=self.serial, threads=threads, runs=self.runs, min_seconds=self.min_seconds,
                                     warmup=self.warmup, xnnpack=self.xnnpack, adb=self.adb)
        return getattr(result, f"{self.statistic}_ms")


def export_part(model, precision: str, representative: np.ndarray) -> bytes:
    """``model`` as .tflite bytes: int8 with int8 input and output (no QUANTIZE op at the ends: inside a network a
    block gets int8 tensors), calibrated on ``representative``; or float32 (``representative`` unused)."""
    if precision == "int8":
        return convert(model, "int8", representative, io="int8")
    return convert(model, "float32")


Converter = Callable[[object, str, np.ndarray], bytes]


# ---- the table --------------------------------------------------------------------------------------------


def _probe_layers(space: NasSpace, input_shape, copies: int) -> dict[str, tuple[tuple[int, int, int], Callable]]:
    """The overhead probe: a 1x1 convolution block (conv, batch norm, activation) keeping the head's input shape,
    once (``probe/1``) and ``copies`` times in a row (``probe/<copies>``)."""
    shape = tuple(space.input_shapes(tuple(input_shape))[-1])
    row = BlockSpec("cn", kernel=1, channels=shape[-1])

    def chain(n):
        def layers(x):
            for i in range(n):
                x = apply_block(x, row, f"probe{i}", activation=space.activation)
            return x
        return layers

    return {f"{PROBE}/1": (shape, chain(1)), f"{PROBE}/{copies}": (shape, chain(copies))}


def _parts(space: NasSpace, input_shape, classes: int, copies: int) -> dict[str, tuple[tuple[int, int, int], Callable]]:
    return {**part_layers(space, input_shape, classes), **_probe_layers(space, input_shape, copies)}


@dataclass
class LatencyTable:
    """Measured latencies (ms) of every part of ``space`` for ``input_shape`` images and ``classes`` classes:
    ``measurements[part][setting]`` holds one median per round (``setting``: :func:`setting_key`). ``runner``: the
    runner's ``describe()`` (device, runtime, timing); ``machine``: the host's CPU and flags; ``export_seconds`` and
    ``timing_seconds``: wall time spent exporting and timing, over every call that filled it."""

    space: NasSpace
    input_shape: tuple[int, int, int]
    classes: int
    config: LatencyTableConfig
    runner: dict
    machine: dict
    measurements: dict = field(default_factory=dict)
    export_seconds: float = 0.0
    timing_seconds: float = 0.0

    def parts(self) -> list[str]:
        """Every part's key in measuring order: stem, blocks' candidates, head, then the probe."""
        return list(_parts(self.space, self.input_shape, self.classes, self.config.probe_copies))

    def due(self, round_index: int) -> list[tuple[str, str]]:
        """(part, setting) pairs with fewer than ``round_index + 1`` rounds measured."""
        keys = [setting_key(p, t) for p, t in self.config.settings()]
        return [(part, k) for k in keys for part in self.parts() if len(self.measurements.get(part, {}).get(k, [])) <= round_index]

    @property
    def complete(self) -> bool:
        return not self.due(self.config.rounds - 1)

    def median_ms(self, part: str, precision: str = "int8", threads: int = 1) -> float:
        """Median over rounds of ``part``'s per-round medians (ms) at a setting; KeyError naming it when unmeasured."""
        values = self.measurements.get(part, {}).get(setting_key(precision, threads))
        if not values:
            raise KeyError(f"the latency table has no {setting_key(precision, threads)} measurement of {part} "
                           f"(measured settings: {', '.join(setting_key(p, t) for p, t in self.config.settings())}); run measure_table to fill it")
        return float(np.median(values))

    def overhead_ms(self, precision: str = "int8", threads: int = 1) -> float:
        """Per-inference overhead ``o = (n T1 - Tn) / (n - 1)`` of the probe (ms, at least 0)."""
        n = self.config.probe_copies
        one, many = self.median_ms(f"{PROBE}/1", precision, threads), self.median_ms(f"{PROBE}/{n}", precision, threads)
        return max(0.0, (n * one - many) / (n - 1))

    def _part_ms(self, block: str, op: str, precision: str, threads: int, o: float) -> float:
        return 0.0 if op == SKIP else max(0.0, self.median_ms(f"{block}/{op}", precision, threads) - o)

    def _fixed_ms(self, precision: str, threads: int, o: float) -> float:
        return max(0.0, self.median_ms("stem", precision, threads) + self.median_ms("head", precision, threads) - o)

    def cost_table(self, precision: str = "int8", threads: int = 1, overhead: bool = True) -> OpCostTable:
        """The :class:`OpCostTable` (ms) at a setting: each operation ``T(part) - o`` (``skip`` 0, clamped at 0), fixed
        ``T(stem) + T(head) - o``. ``overhead=False``: ``o = 0``, the plain sum of the parts (to compare with)."""
        o = self.overhead_ms(precision, threads) if overhead else 0.0
        blocks = {b.name: {op: self._part_ms(b.name, op, precision, threads, o) for op in b.ops} for b in self.space.blocks()}
        how = f"per-inference overhead {o:.4f} ms taken out of each part" if overhead else "plain sum of the parts"
        source = f"{self.runner.get('device', '?')}; {self.runner.get('runtime', '?')}; {precision}, {threads} thread(s); {how}"
        return OpCostTable("ms", blocks, self._fixed_ms(precision, threads, o), source)

    def predict(self, arch: Architecture, precision: str = "int8", threads: int = 1, overhead: bool = True) -> float:
        """``cost_table(precision, threads, overhead).predict(space, arch)`` (ms), from the parts ``arch`` uses only
        (so a table holding just those parts, e.g. re-timed ones, predicts it)."""
        arch.check(self.space)
        o = self.overhead_ms(precision, threads) if overhead else 0.0
        return float(self._fixed_ms(precision, threads, o) + sum(self._part_ms(b.name, op, precision, threads, o) for b, op in zip(self.space.blocks(), arch.choices)))

    def parts_of(self, arch: Architecture) -> list[str]:
        """The parts ``arch`` is made of (stem, its blocks' operations but skip, head) and the probe's two."""
        ops = [f"{b.name}/{op}" for b, op in zip(self.space.blocks(), arch.choices) if op != SKIP]
        return ["stem", *ops, "head", f"{PROBE}/1", f"{PROBE}/{self.config.probe_copies}"]

    def check(self, space: NasSpace, input_shape, classes: int, where: str = "the latency table") -> "LatencyTable":
        """Raise ValueError saying which of space, input shape or classes ``where`` was measured for differently."""
        if space.to_dict() != self.space.to_dict():
            raise ValueError(f"{where} was measured for another search space ({self.space.stem}, {len(self.space.blocks())} blocks, "
                             f"width {self.space.width}); measure one for this space")
        if tuple(input_shape) != tuple(self.input_shape) or int(classes) != self.classes:
            raise ValueError(f"{where} was measured for {tuple(self.input_shape)} inputs and {self.classes} classes, not "
                             f"{tuple(input_shape)} and {classes}; measure one for these")
        return self

    # ---- files ------------------------------------------------------------------------------------------

    def to_dict(self) -> dict:
        return {"format": FORMAT, "space": self.space.to_dict(), "input_shape": list(self.input_shape), "classes": self.classes,
                "config": self.config.to_dict(), "runner": dict(self.runner), "machine": dict(self.machine),
                "export_seconds": round(self.export_seconds, 3), "timing_seconds": round(self.timing_seconds, 3), "measurements": self.measurements}

    @classmethod
    def from_dict(cls, data: dict, where: str = "latency table") -> "LatencyTable":
        if data.get("format") != FORMAT:
            raise ValueError(f"{where} is not an edgeopt latency table (format {data.get('format')!r}, expected {FORMAT!r})")
        return cls(NasSpace.from_dict(data["space"], "space"), tuple(int(v) for v in data["input_shape"]), int(data["classes"]),
                   LatencyTableConfig.from_dict(data["config"], "config"), dict(data["runner"]), dict(data["machine"]),
                   {part: {k: [float(v) for v in vs] for k, vs in by.items()} for part, by in data["measurements"].items()},
                   float(data.get("export_seconds", 0.0)), float(data.get("timing_seconds", 0.0)))

    def save(self, path: str | os.PathLike) -> Path:
        """Write the table as JSON, atomically (replacing an older one)."""
        return write_atomic(path, json.dumps(self.to_dict(), indent=1) + "\n", overwrite=True)

    @classmethod
    def load(cls, path: str | os.PathLike) -> "LatencyTable":
        return cls.from_dict(json.loads(Path(path).read_text()), str(path))

    def to_markdown(self) -> str:
        """The table's header (device, runtime, timing, host CPU and flags, overhead per setting) and every part's
        median latency (ms) at every setting."""
        settings = self.config.settings()
        keys = [setting_key(p, t) for p, t in settings]
        lines = [f"Latency table: {self.runner.get('device', '?')}; {self.runner.get('runtime', '?')}.", "",
                 f"Timing: {self.runner.get('timing', '?')}; median of {self.config.rounds} interleaved rounds.",
                 f"Host: {self.machine.get('describe', '?')}.", ""]
        measured = [(p, t) for p, t in settings if all(self.measurements.get(part, {}).get(setting_key(p, t)) for part in self.parts())]
        if measured:
            lines += ["Per-inference overhead o (probe): " + ", ".join(f"{setting_key(p, t)} {self.overhead_ms(p, t):.4f} ms" for p, t in measured) + ".", ""]
        lines += ["| part | " + " | ".join(f"{k} ms" for k in keys) + " |", "|---|" + "---:|" * len(keys)]
        for part in self.parts():
            cells = [f"{np.median(v):.4f}" if (v := self.measurements.get(part, {}).get(k)) else "-" for k in keys]
            lines.append(f"| {part} | " + " | ".join(cells) + " |")
        return "\n".join(lines) + "\n"


def parts_dir(path: str | os.PathLike) -> Path:
    """Where :func:`measure_table` keeps the exported parts of the table at ``path`` by default: ``<path>.models/``."""
    path = Path(path)
    return path.with_name(path.name + ".models")


def part_file(folder: str | os.PathLike, part: str, precision: str) -> Path:
    """The exported file of ``part`` at ``precision`` in ``folder`` (``block3a/ir_k5_e6`` -> ``block3a__ir_k5_e6.int8.tflite``)."""
    return Path(folder) / f"{part.replace('/', '__')}.{precision}.tflite"


def _host() -> dict:
    m = this_machine()
    return {**m.to_dict(), "describe": m.describe()}


def _check_continuable(old: LatencyTable, space, input_shape, classes, config: LatencyTableConfig, runner: dict, path) -> None:
    old.check(space, input_shape, classes, str(path))
    if old.config._same_measurement() != config._same_measurement():
        raise ValueError(f"{path} was measured with other settings ({old.config.to_dict()}); continue it with the same "
                         "precisions, threads, probe_copies, calibration_samples and seed (only rounds may change), or use a new file")
    if same_runner(old.runner, runner) is not None:
        raise ValueError(f"{path} {same_runner(old.runner, runner)}; a table holds one device's numbers taken one way: use a new file")


def same_runner(measured: dict, now: dict) -> str | None:
    """None when two runner descriptions (``describe()`` plus ``name``) are the same kind, device and timing; else
    what differs, as "was measured by X on D, not Y on E" or "was timed as T, not U"."""
    if (measured.get("name"), measured.get("device")) != (now.get("name"), now.get("device")):
        return f"was measured by {measured.get('name')} on {measured.get('device')!r}, not {now.get('name')} on {now.get('device')!r}"
    if measured.get("timing") != now.get("timing"):
        return f"was timed as {measured.get('timing')!r}, not {now.get('timing')!r}"
    return None


def measure_table(space: NasSpace, input_shape: tuple[int, int, int], classes: int, path: str | os.PathLike,
                  config: LatencyTableConfig = LatencyTableConfig(), *, runner: LatencyRunner | None = None, converter: Converter | None = None,
                  models_dir: str | os.PathLike | None = None, log: Callable[[str], None] | None = None) -> LatencyTable:
    """Measure the latency table of ``space`` into ``path`` (JSON), or continue the one there.

    Exports every part at each precision into ``models_dir`` (None: ``<path>.models/``; exported files are reused),
    then times each (part, setting) once per round with ``runner`` (None: :class:`LiteRTRunner`), interleaved, until
    every one has ``config.rounds`` rounds. ``converter(model, precision, representative) -> bytes`` replaces
    :func:`export_part`. ``log`` gets one line per phase and round with the time left (default: printed).
    Returns the (complete) table."""
    runner = runner or LiteRTRunner()
    converter = converter or export_part
    log = log or (lambda line: print(line, file=sys.stdout, flush=True))
    path = Path(path)
    models = Path(models_dir) if models_dir is not None else parts_dir(path)
    described = runner.describe() | {"name": runner.name}
    if path.exists():
        table = LatencyTable.load(path)
        _check_continuable(table, space, input_shape, classes, config, described, path)
        table.config = config
        done = sum(len(v) for by in table.measurements.values() for v in by.values())
        log(f"latency table {path}: continuing ({done} measurements already there)")
    else:
        table = LatencyTable(space, tuple(int(v) for v in input_shape), int(classes), config, described, _host())
    table.runner = described
    files = _export_all(table, models, converter, log)
    _time_all(table, files, runner, path, log)
    return table


def _export_all(table: LatencyTable, models: Path, converter: Converter, log) -> dict[tuple[str, str], Path]:
    """Every (part, precision)'s file in ``models`` (exported where missing); returns them by key."""
    parts = _parts(table.space, table.input_shape, table.classes, table.config.probe_copies)
    files = {(part, p): part_file(models, part, p) for part in parts for p in table.config.precisions}
    todo = [part for part in parts if any(not files[(part, p)].exists() for p in table.config.precisions)]
    if not todo:
        return files
    start = time.perf_counter()
    rng = np.random.default_rng(table.config.seed)
    with bar(total=len(todo), desc="latency table: exporting parts", unit="part") as shown:
        for part in todo:
            shape, layers = parts[part]
            model = part_model(shape, layers, name=part.replace("/", "__").replace(".", "p"))
            representative = rng.uniform(-1, 1, (table.config.calibration_samples, *shape)).astype(np.float32)
            for p in table.config.precisions:
                if not files[(part, p)].exists():
                    write_atomic(files[(part, p)], converter(model, p, representative), overwrite=True)
            shown.update(1)
    seconds = time.perf_counter() - start
    table.export_seconds += seconds
    log(f"latency table: exported {len(todo)} parts ({len(table.config.precisions)} precisions each) in {seconds:.0f} s")
    return files


def _time_all(table: LatencyTable, files: dict, runner: LatencyRunner, path: Path, log) -> None:
    """Every due (part, setting), round after round, saving every few seconds and after each round."""
    rounds = table.config.rounds
    total = sum(len(table.due(r)) for r in range(rounds))
    start = last_save = time.perf_counter()
    timed = 0
    try:
        with bar(total=total, desc="latency table: timing parts", unit="run") as shown:
            for r in range(rounds):
                due = table.due(r)
                for part, key in (reversed(due) if r % 2 else due):  # odd rounds backwards: drift hits both ends alike
                    precision, threads = key.split("@")
                    ms = float(runner(files[(part, precision)].read_bytes(), int(threads)))
                    table.measurements.setdefault(part, {}).setdefault(key, []).append(ms)
                    timed += 1
                    shown.update(1)
                    if time.perf_counter() - last_save > _SAVE_SECONDS:
                        table.save(path)
                        last_save = time.perf_counter()
                if due:
                    elapsed = time.perf_counter() - start
                    table.save(path)
                    log(f"latency table round {r + 1}/{rounds}: {len(due)} measurements, {elapsed:.0f} s so far, "
                        f"about {elapsed / max(timed, 1) * (total - timed):.0f} s left")
    finally:
        table.timing_seconds += time.perf_counter() - start
        table.save(path)


def table_from_environment(space: NasSpace, input_shape, classes: int) -> OpCostTable:
    """The ``latency`` cost model: the int8, 1-thread :class:`OpCostTable` of the latency table file named by
    ``$EDGEOPT_LATENCY_TABLE``, checked against ``space``, ``input_shape`` and ``classes``."""
    name = os.environ.get(LATENCY_TABLE_ENV)
    if not name:
        raise ValueError(f"the latency cost model reads a measured table: set {LATENCY_TABLE_ENV} to a file written by "
                         "edgeopt.search.latency_table.measure_table (or pass cost_table= to the search)")
    if not Path(name).is_file():
        raise FileNotFoundError(f"{LATENCY_TABLE_ENV}={name}: no such latency table file")
    return LatencyTable.load(name).check(space, input_shape, classes, name).cost_table("int8", 1)
