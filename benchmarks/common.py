"""Timing helpers shared by the benchmark scripts (which print JSON)."""

from __future__ import annotations

import json
import os
import platform
import statistics
import sys
import time
from collections.abc import Callable

import numpy as np
from cryptography.hazmat.primitives.ciphers import Cipher, algorithms, modes

# glibc returns freed multi-megabyte blocks to the OS and faults fresh pages in
# on the next allocation; on virtual machines that costs more than AES-CTR on
# the same bytes. A long-running client or aggregator process keeps its heap
# warm; these settings make the benchmark process do the same.
WARM_HEAP = {"MALLOC_MMAP_THRESHOLD_": "33554432", "MALLOC_TRIM_THRESHOLD_": "17179869184"}


def ensure_warm_heap() -> dict:
    """Re-exec this script once with ``WARM_HEAP`` set; return the settings in force."""
    if any(os.environ.get(name) != value for name, value in WARM_HEAP.items()):
        if os.environ.get("SECUREFL_BENCH_COLD_HEAP") != "1":
            os.execve(sys.executable, [sys.executable, *sys.argv], {**os.environ, **WARM_HEAP})
    return {name: os.environ.get(name) for name in WARM_HEAP}


def median_seconds(call: Callable[[], object], repeats: int = 5) -> float:
    """Median wall time of ``repeats`` calls (after one warm-up call)."""
    call()
    samples = []
    for _ in range(repeats):
        start = time.perf_counter()
        call()
        samples.append(time.perf_counter() - start)
    return statistics.median(samples)


def aes_ctr_keystream(nbytes: int) -> bytes:
    """The primitive a mask expansion cannot avoid: nbytes of AES-256-CTR keystream."""
    encryptor = Cipher(algorithms.AES(os.urandom(32)), modes.CTR(bytes(16))).encryptor()
    return encryptor.update(bytes(nbytes))


def machine() -> dict:
    return {
        "python": platform.python_version(),
        "machine": platform.machine(),
        "cpus": os.cpu_count(),
        "numpy": np.__version__,
    }


def emit(figures: dict) -> None:
    figures.setdefault("machine", machine())
    json.dump(figures, sys.stdout, indent=2)
    sys.stdout.write("\n")
