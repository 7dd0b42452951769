"""Table 1, the machine: its CPU (kres.machine.cpu_info), the load average when the benchmark
started and ended, and the float32 matrix-multiply rate it reaches, the ceiling every other
table is compared with."""

from __future__ import annotations

import platform
import time

import numpy as np

from kres.bench.common import loadavg
from kres.machine import cpu_info


def gemm_rate(size: int = 4096, repeats: int = 5) -> dict:
    """GFLOP/s of the best of ``repeats`` float32 ``size`` x ``size`` matrix products
    (2 x size^3 floating-point operations each) through NumPy's BLAS."""
    rng = np.random.default_rng(0)
    a = rng.standard_normal((size, size), dtype=np.float32)
    b = rng.standard_normal((size, size), dtype=np.float32)
    a @ b  # warm: thread pool and page faults
    best = float("inf")
    for _ in range(repeats):
        start = time.perf_counter()
        a @ b
        best = min(best, time.perf_counter() - start)
    return {"gflops": 2 * size**3 / best / 1e9, "size": size, "repeats": repeats,
            "library": f"numpy {np.__version__} ({_blas()})"}


def _blas() -> str:
    try:
        info = np.show_config(mode="dicts")["Build Dependencies"]["blas"]
        return f"{info.get('name', '?')} {info.get('version', '')}".strip()
    except Exception:  # older NumPy: no dict form
        return "BLAS"


def measure(suite) -> dict:
    """The machine table (without the end load, which the caller adds last)."""
    return {"cpu": cpu_info(), "python": platform.python_version(), "load_start": loadavg(),
            "gemm": gemm_rate(suite.gemm_size, suite.gemm_repeats)}
