"""What machine a figure was measured on: CPU model, the instruction-set features that decide
int8 and bf16 speed, and cores. Latency and throughput mean nothing without it: the same int8
ResNet-50 ran 6.7x faster than float32 on an AVX-512 VNNI CPU and no faster on an AVX2-only one.
"""

from __future__ import annotations

import functools
import os
import platform
import subprocess

# x86-64: AVX2 (256-bit SIMD), AVX-512, the int8 dot-product instructions (VNNI; AVX-VNNI is
# the 256-bit form on client CPUs), bf16 and AMX tiles. arm64: dot product (asimddp), int8
# matrix multiply (i8mm), SVE and bf16.
X86_FLAGS = ("avx2", "fma", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_tile",
             "amx_int8", "amx_bf16")
ARM_FLAGS = ("asimd", "asimddp", "i8mm", "sve", "sve2", "bf16")


@functools.lru_cache(maxsize=None)
def cpu_info() -> dict:
    """``{"model", "arch", "cores", "flags"}`` of this machine's CPU; ``flags`` lists the
    features above that it has.

    >>> kres.machine.cpu_info()["flags"]
    ['avx2', 'fma']
    """
    arch = platform.machine().lower()
    model, found = platform.processor() or arch, set()
    if os.path.exists("/proc/cpuinfo"):
        with open("/proc/cpuinfo") as f:
            for line in f:
                key, _, value = line.partition(":")
                key = key.strip().lower()
                if key in ("model name", "hardware", "cpu model") and value.strip():
                    model = value.strip()
                elif key in ("flags", "features"):
                    found.update(value.split())
    elif platform.system() == "Darwin":
        model = _sysctl("machdep.cpu.brand_string") or model
        found.update(_sysctl("machdep.cpu.features").lower().split())
        found.update(_sysctl("machdep.cpu.leaf7_features").lower().split())
        if _sysctl("hw.optional.arm.FEAT_DotProd") == "1":
            found.add("asimddp")
        if _sysctl("hw.optional.arm.FEAT_I8MM") == "1":
            found.add("i8mm")
    known = ARM_FLAGS if arch in ("arm64", "aarch64") else X86_FLAGS
    return {"model": model, "arch": arch, "cores": os.cpu_count() or 1,
            "flags": [f for f in known if f in found]}


def describe_cpu() -> str:
    """One line for tables: ``AMD EPYC (x86_64, 2 cores; avx2 fma)``."""
    info = cpu_info()
    flags = " ".join(info["flags"]) or "no SIMD extensions listed"
    return f"{info['model']} ({info['arch']}, {info['cores']} cores; {flags})"


def _sysctl(name: str) -> str:
    try:
        return subprocess.run(["sysctl", "-n", name], capture_output=True, text=True,
                              timeout=5).stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return ""
