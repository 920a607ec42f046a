"""Modular exponentiation of many bases on all cores: gmpy2 list calls in threads.

``gmpy2.powmod_base_list`` computes [b^e mod m for b in bases] in GMP and
releases the GIL for the whole list, so plain threads run it on every core
without the start-up, pickling and fork-safety costs of a process pool (and
without an engine ever spawning a process). Small jobs stay on the calling
thread: a thread only pays off once it has a few exponentiations to do.
"""

from __future__ import annotations

import os
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from typing import Any

import gmpy2

from securefl import validation
from securefl.errors import ConfigurationError

Mpz = Any
"""A ``gmpy2.mpz`` (gmpy2 ships no type information)."""

__all__ = ["available_cores", "resolve_workers", "powmod_many"]

# Fewest exponentiations worth handing to a thread of their own.
MIN_PER_WORKER = 8


def available_cores() -> int:
    """Cores this process may run on (its CPU affinity where the OS reports one)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except (AttributeError, OSError):  # pragma: no cover - not Linux
        return max(1, os.cpu_count() or 1)


def resolve_workers(workers: int | None, jobs: int) -> int:
    """Threads to use for ``jobs`` exponentiations: ``workers`` (capped), or automatic when None.

    Automatic: one thread per MIN_PER_WORKER jobs, at most one per core, at
    least one (so a 2-core machine, a CI runner or a tiny test runs inline).
    """
    if workers is not None and (not validation.is_integer(workers) or workers < 1):
        raise ConfigurationError(f"workers must be a positive integer or None (automatic); found {workers!r}")
    limit = available_cores() if workers is None else int(workers)
    return max(1, min(limit, jobs // MIN_PER_WORKER if workers is None else jobs))


def powmod_many(bases: Sequence[object], exponent: object, modulus: object, *, workers: int | None = None) -> list[Mpz]:
    """[b^exponent mod modulus for b in bases] as gmpy2 integers, split over ``workers`` threads."""
    bases = list(bases)
    threads = resolve_workers(workers, len(bases))
    exponent, modulus = gmpy2.mpz(exponent), gmpy2.mpz(modulus)
    if threads <= 1:
        return list(gmpy2.powmod_base_list(bases, exponent, modulus))
    step = -(-len(bases) // threads)
    chunks = [bases[start : start + step] for start in range(0, len(bases), step)]
    with ThreadPoolExecutor(max_workers=threads, thread_name_prefix="securefl-powmod") as executor:
        parts = list(executor.map(lambda chunk: gmpy2.powmod_base_list(chunk, exponent, modulus), chunks))
    return [value for part in parts for value in part]
