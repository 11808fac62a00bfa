"""What machine a benchmark ran on: CPU model, its vector instruction sets, cores and memory.

Benchmark figures are ratios measured in one run, but the absolute times behind them (and some ratios: models
against decoding) depend on the CPU: the same code ran the vision path benchmark at 0.26 x real time on one
2-core machine of this project and at 0.46 on another (an AMD EPYC with AVX2 and no AVX-512), whose face tracks
also differed in the last digits. Every benchmark prints :meth:`Machine.describe` of :func:`this_machine` (or
:func:`machine_line`, with the load average) beside its table, so that a figure is compared with one measured on
the same kind of CPU.
"""

from __future__ import annotations

import os
import platform
from dataclasses import dataclass
from pathlib import Path

#: CPU flags that change the speed of the model kernels (XNNPACK, CTranslate2, ONNX Runtime, oneDNN), in the order
#: printed, as ``/proc/cpuinfo`` names them.
VECTOR_FLAGS = ("avx2", "fma", "avx_vnni", "avx512f", "avx512_vnni", "avx512_bf16", "amx_tile")


@dataclass(frozen=True)
class Machine:
    """The CPU, cores and memory of this machine, as far as the system says."""

    cpu: str  # model name, e.g. "AMD EPYC 7B13" (may be vague in a virtual machine: "AMD EPYC")
    vector_flags: tuple[str, ...]  # those of VECTOR_FLAGS the CPU has
    cores: int  # CPUs this process may run on
    memory_gib: float | None  # total memory; None where unknown

    def describe(self) -> str:
        """One line, e.g. ``2 CPU cores, AMD EPYC (avx2 fma, no AVX-512), 23.5 GiB memory``."""
        flags = " ".join(self.vector_flags) or "no AVX2"
        if not any(f.startswith("avx512") for f in self.vector_flags):
            flags += ", no AVX-512"
        memory = f", {self.memory_gib:.1f} GiB memory" if self.memory_gib is not None else ""
        return f"{self.cores} CPU cores, {self.cpu} ({flags}){memory}"


def parse_cpuinfo(text: str) -> tuple[str, tuple[str, ...]]:
    """``(model name, vector flags)`` of the first processor in a Linux ``/proc/cpuinfo`` text."""
    name, flags = "", set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and not name:
            name = " ".join(value.split())
        elif key == "flags" and not flags:
            flags = set(value.split())
    return name, tuple(f for f in VECTOR_FLAGS if f in flags)


def _memory_gib(meminfo: str) -> float | None:
    for line in meminfo.splitlines():
        if line.startswith("MemTotal:"):
            return int(line.split()[1]) / 1024**2  # kB
    return None


def this_machine(proc: Path | str = "/proc") -> Machine:
    """:class:`Machine` of the running system (``proc``: where ``cpuinfo`` and ``meminfo`` are; Linux)."""
    proc = Path(proc)
    try:
        name, flags = parse_cpuinfo((proc / "cpuinfo").read_text())
    except OSError:
        name, flags = "", ()
    try:
        memory = _memory_gib((proc / "meminfo").read_text())
    except OSError:
        memory = None
    try:
        cores = len(os.sched_getaffinity(0))
    except AttributeError:  # not on Linux
        cores = os.cpu_count() or 1
    return Machine(cpu=name or platform.processor() or platform.machine(), vector_flags=flags, cores=cores,
                   memory_gib=memory)


def machine_line() -> str:
    """:meth:`Machine.describe` of this machine with its load average now: the line benchmarks print."""
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return f"{this_machine().describe()}; load average {load} (1, 5, 15 min)"
