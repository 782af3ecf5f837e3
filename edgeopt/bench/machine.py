"""The one description of the machine a number was measured on: CPU model, cores, architecture, SIMD flags."""
from __future__ import annotations

import os
import platform
from dataclasses import asdict, dataclass
from functools import lru_cache

# x86 flags that decide XNNPACK's kernels: int8 beats float32 only with VNNI; AVX turns its sparse path off
_FLAGS_OF_INTEREST = ("avx", "avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "amx_tile", "amx_int8", "neon", "asimd", "asimddp", "i8mm")
# the features every table header says present or absent, and the flags that give each
FEATURES = {"AVX2": ("avx2",), "AVX-512": ("avx512f",), "VNNI": ("avx512_vnni", "avx_vnni", "asimddp"), "AMX": ("amx_tile", "amx_int8")}


@dataclass(frozen=True)
class Machine:
    """CPU model, logical cores, architecture and the SIMD flags (of :data:`_FLAGS_OF_INTEREST`) it has."""

    cpu: str
    cores: int
    arch: str
    system: str
    flags: tuple[str, ...]

    def has(self, feature: str) -> bool:
        """Whether the CPU has ``feature`` (a key of :data:`FEATURES`: "AVX2", "AVX-512", "VNNI", "AMX")."""
        return any(f in self.flags for f in FEATURES[feature])

    @property
    def vnni(self) -> bool:
        """int8 dot-product instructions: AVX512-VNNI, AVX-VNNI or Arm's dot product (asimddp)."""
        return self.has("VNNI")

    def describe(self) -> str:
        """One line for table headers: CPU, cores, architecture, SIMD flags, then each of :data:`FEATURES`
        present or absent, e.g. 'AMD EPYC, 2 cores, x86_64 (avx, avx2, fma; AVX2, no AVX-512, no VNNI, no AMX)'."""
        flags = ", ".join(self.flags) or "no SIMD flags found"
        features = ", ".join(name if self.has(name) else f"no {name}" for name in FEATURES)
        return f"{self.cpu}, {self.cores} cores, {self.arch} ({flags}; {features})"

    def to_dict(self) -> dict:
        return {**asdict(self), "flags": list(self.flags), "vnni": self.vnni, "features": {name: self.has(name) for name in FEATURES}}


def _cpuinfo() -> tuple[str | None, set[str]]:
    try:
        text = open("/proc/cpuinfo").read()
    except OSError:
        return None, set()
    model = next((line.split(":", 1)[1].strip() for line in text.splitlines() if line.startswith(("model name", "Hardware"))), None)
    flags = next((line.split(":", 1)[1].split() for line in text.splitlines() if line.startswith(("flags", "Features"))), [])
    return model, set(flags)


@lru_cache(maxsize=1)
def this_machine() -> Machine:
    """A :class:`Machine` for the machine this process runs on (Linux reads /proc/cpuinfo once per process)."""
    model, flags = _cpuinfo()
    return Machine(model or platform.processor() or platform.machine(), os.cpu_count() or 1, platform.machine(), platform.system(),
                   tuple(f for f in _FLAGS_OF_INTEREST if f in flags))


def machine() -> str:
    """CPU model and core count of this machine, e.g. 'Intel(R) Xeon(R) Processor, 2 cores, x86_64'; what
    every :class:`~edgeopt.bench.results.LatencyResult` records as its ``device``."""
    m = this_machine()
    return f"{m.cpu}, {m.cores} cores, {m.arch}"
