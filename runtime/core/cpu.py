"""What this processor can do for int8 and bf16 inference, read once from the kernel's `/proc/cpuinfo`.

Why `/proc/cpuinfo` and not a library: its flags are what the kernel found *and enabled* (AMX needs the kernel to
manage its tile state; a CPUID probe such as py-cpuinfo's reports the instruction set even where the OS keeps it
off), and it costs one file read and no dependency. Where it does not exist (macOS, Windows) the CPU is described
as unknown, and treated as the cautious case: an x86 CPU of unknown features may saturate int8 dot products.

The int8 fact that matters (docs/cpus.md): x86 CPUs without VNNI (AVX2 only, or AVX-512 without VNNI) multiply
u8×s8 with `vpmaddubsw`, which adds each pair of products into a saturating int16; with VNNI (`vpdpbusd`) or AMX
the products accumulate in int32 and cannot overflow.
"""

from __future__ import annotations

import dataclasses
import functools
import platform
from pathlib import Path
from typing import Any

CPUINFO = Path("/proc/cpuinfo")
X86 = ("x86_64", "amd64", "i386", "i686")
X86_FEATURES = ("avx2", "avx512f", "avx512_vnni", "avx_vnni", "amx_int8", "avx512_bf16", "amx_bf16")
ARM_FEATURES = ("asimddp", "i8mm", "bf16")
INT32_ACCUMULATING = frozenset({"avx512_vnni", "avx_vnni", "amx_int8"})  # int8 dot products that cannot saturate


@dataclasses.dataclass(frozen=True)
class Cpu:
    """A processor: its name, architecture, and which of the features above it has."""

    model: str
    architecture: str  # platform.machine(): "x86_64", "aarch64", ...
    features: frozenset[str]
    known: bool = True  # False: no /proc/cpuinfo to read the features from

    @property
    def x86(self) -> bool:
        return self.architecture.lower() in X86

    @property
    def int8_saturates(self) -> bool:
        """True on x86 without VNNI/AMX-INT8 (or of unknown features): int8 dot products pass through a saturating
        int16, so weights outside [-64, 64] can overflow (runtime/bundle/int8_overflow.py)."""
        return self.x86 and not self.features & INT32_ACCUMULATING

    @property
    def cpu_class(self) -> str:
        """The class the docs' and benches' numbers are grouped by."""
        if not self.known:
            return f"{self.architecture} (features unknown)"
        if not self.x86:
            return f"{self.architecture}" + (" dotprod" if "asimddp" in self.features else "")
        if "amx_int8" in self.features:
            return "x86 AMX + VNNI"
        if self.features & INT32_ACCUMULATING:
            return "x86 VNNI"
        return "x86 AVX-512 without VNNI" if "avx512f" in self.features else "x86 AVX2 without VNNI"

    def describe(self) -> str:
        """`Intel(R) Xeon(R) ... (x86 AMX + VNNI: avx2 avx512f avx512_vnni ...)`."""
        listed = " ".join(sorted(self.features)) or "none of " + " ".join(
            X86_FEATURES if self.x86 else ARM_FEATURES)
        return f"{self.model} ({self.cpu_class}: {listed})"

    def as_record(self) -> dict[str, Any]:
        return {"model": self.model, "architecture": self.architecture, "class": self.cpu_class,
                "features": sorted(self.features), "int8_saturates": self.int8_saturates}


def parse_cpuinfo(text: str, architecture: str) -> Cpu:
    """The Cpu described by the text of a `/proc/cpuinfo` (x86 `flags`, Arm `Features`; the first processor)."""
    fields: dict[str, str] = {}
    for line in text.splitlines():
        if not line.strip():
            if fields:
                break  # the first processor's block is enough: Linux lists the same features for every core
            continue
        key, _, value = line.partition(":")
        fields.setdefault(key.strip().lower(), value.strip())
    flags = set((fields.get("flags") or fields.get("features") or "").split())
    wanted = X86_FEATURES if architecture.lower() in X86 else ARM_FEATURES
    model = fields.get("model name") or fields.get("hardware") or (
        f"Arm CPU part {fields['cpu part']}" if "cpu part" in fields else architecture)
    return Cpu(model=model, architecture=architecture, features=frozenset(f for f in wanted if f in flags))


@functools.cache
def this_cpu() -> Cpu:
    """This machine's processor (read once per process)."""
    architecture = platform.machine() or "unknown"
    try:
        return parse_cpuinfo(CPUINFO.read_text(), architecture)
    except OSError:
        return Cpu(model=platform.processor() or architecture, architecture=architecture, features=frozenset(),
                   known=False)
