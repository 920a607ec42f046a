"""BFV (TenSEAL) vs our default packed Paillier vs phe, side by side in one run; prints JSON.

    .venv/bin/python benchmarks/lattice.py [--dimensions 100000 1000000] [--uploads 4]

Every protocol runs its default configuration over the default encoding
(value_bits=12, max_weight=256, max_clients=1024, ring_bits=32). Figures,
per parameter unless named otherwise, everything a party does counted:

- client: the client engine's ``provide_input`` + the upload request
  (checks, encryption, serialization); Paillier's includes filling its
  obfuscator pool (all cores), which it does before it has its update.
- server: validating one upload from its bytes and adding it into the
  running aggregate, per client upload (seconds for the whole vector).
- decryption: the key holder's whole request (validation, decryption,
  consistency check), per parameter.
- bytes: ciphertext bytes and whole upload message bytes, per parameter.
- key set-up: stated apart (key pair, public context, each client's
  checked load of it), made once per federation and reused every round;
  ``amortised_...`` spreads it over ``--rounds`` rounds of one client.

phe (``PaillierPublicKey.encrypt``, one 512-byte ciphertext per value) is
measured on ``--phe-values`` values; our Paillier on at most
``--paillier-dimension`` coordinates (its costs are linear in D: one
ciphertext per 78 coordinates), so that the run stays minutes long. Each
decrypted sum is checked against the inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import platform
import secrets
import time
from collections.abc import Callable
from typing import Any

import numpy as np

from securefl import ring
from securefl.encoding import Encoding
from securefl.protocols import BFV, Paillier
from securefl.protocols.lattice import LatticeKeyHolder, load_public_context
from securefl.protocols.paillier import KeyHolder
from securefl.protocols.wire import client_id, decode_message

TARGET_CLIENT_SPEEDUP_VS_PAILLIER = 50.0
PAILLIER_BYTES_PER_PARAMETER = 6.6


def _timed(call: Callable[[], Any]) -> tuple[Any, float]:
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def _inputs(bound: int, d: int, count: int, bits: int) -> list[np.ndarray]:
    rng = np.random.default_rng(0)
    return [ring.from_signed(rng.integers(-bound, bound + 1, size=d), bits) for _ in range(count)]


def _run(protocol: Any, d: int, uploads: int, *, fill: Callable[[Any, int], float] | None = None) -> dict:
    """One aggregation of ``uploads`` clients driven by hand, each party timed; clients >= 2 replay client 0's
    upload bytes under their own id (the server's work per upload is the same)."""
    parties = protocol.setup(clients=uploads, vector_length=d, session=os.urandom(16), round=0)
    bits = protocol.encoding.ring_bits
    bound = protocol.encoding.max_weight * ((1 << (protocol.encoding.value_bits - 1)) - 1)
    inputs = _inputs(bound, d, 2, bits)
    requests = parties.server.begin_phase("upload")
    client_seconds, made = [], []
    for position in range(2):
        client = parties.clients[position]
        precompute = fill(client, d) if fill is not None else 0.0

        def upload(client: Any = client, position: int = position) -> Any:
            client.provide_input(inputs[position])
            (message,) = client.handle(requests[position])
            return message

        message, seconds = _timed(upload)
        client_seconds.append(precompute + seconds)
        made.append(decode_message(message.to_bytes()))
    server_seconds = []
    for position in range(uploads):
        message = made[1] if position == 1 else dataclasses.replace(made[0], sender=client_id(position))
        _, seconds = _timed(lambda message=message: parties.server.handle(decode_message(message.to_bytes())))
        server_seconds.append(seconds)
    parties.server.end_phase("upload")
    (request,) = parties.server.begin_phase("decrypt")
    request = decode_message(request.to_bytes())
    (answer,), decrypt_seconds = _timed(lambda: parties.helpers[0].handle(request))
    parties.server.handle(decode_message(answer.to_bytes()))
    parties.server.end_phase("decrypt")
    expected = ring.to_signed(inputs[0], bits) * (uploads - 1) + ring.to_signed(inputs[1], bits)
    exact = bool(np.array_equal(parties.server.result().total, ring.from_signed(expected, bits)))
    body = made[0].ciphertexts
    ciphertext_bytes = sum(len(c) for c in body) if isinstance(body, tuple) else len(body)
    return {
        "dimension": d,
        "client_seconds_per_parameter": min(client_seconds) / d,
        "server_aggregation_seconds_per_client": float(np.median(server_seconds[1:])),
        "decryption_seconds_per_parameter": decrypt_seconds / d,
        "ciphertext_bytes_per_parameter": ciphertext_bytes / d,
        "upload_message_bytes_per_parameter": len(made[0].to_bytes()) / d,
        "decrypted_sum_exact": exact,
    }


def _bfv(d: int, uploads: int, rounds: int, degree: int | None) -> dict:
    encoding = Encoding()
    parameters = BFV(encoding=encoding, poly_modulus_degree=degree).parameters
    keys, keygen = _timed(lambda: LatticeKeyHolder.generate(parameters))
    public = keys.public_context_bytes
    load_public_context(public, parameters)  # the one reference context per process, cached
    _, client_load = _timed(lambda: load_public_context(public, parameters))
    protocol = BFV(encoding=encoding, key_holder=keys, poly_modulus_degree=degree)
    figures = _run(protocol, d, uploads)
    setup = keygen + client_load
    figures.update({
        "parameters": {"poly_modulus_degree": parameters.poly_modulus_degree,
                       "plain_modulus": parameters.plain_modulus,
                       "plain_modulus_bits": parameters.plain_modulus.bit_length(),
                       "coeff_mod_bit_sizes": list(parameters.coeff_mod_bit_sizes),
                       "ciphertext_level_bits": parameters.data_bits, "security_bits": 128},
        "ciphertexts_per_client": protocol.ciphertexts_per_client(d),
        "key_setup": {"key_pair_seconds": keygen, "public_context_bytes": len(public),
                      "client_public_context_load_seconds": client_load,
                      "amortised_seconds_per_parameter_per_round": setup / (d * rounds), "rounds": rounds},
    })
    figures["client_seconds_per_parameter_with_amortised_setup"] = (
        figures["client_seconds_per_parameter"] + figures["key_setup"]["amortised_seconds_per_parameter_per_round"]
    )
    return figures


def _paillier(d: int, uploads: int, keys: KeyHolder) -> dict:
    protocol = Paillier(key_holder=keys, precompute=False)  # the pool is filled, and timed, per client below

    def fill(client: Any, length: int) -> float:
        _, seconds = _timed(lambda: client._pool.fill(protocol.ciphertexts_per_client(length)))
        return seconds

    figures = _run(protocol, d, uploads, fill=fill)
    figures["ciphertexts_per_client"] = protocol.ciphertexts_per_client(d)
    return figures


def _phe(keys: KeyHolder, count: int) -> dict:
    public, private = keys.public_key, keys._private_key
    values = [secrets.randbelow(2 * 524_287 + 1) - 524_287 for _ in range(count)]
    encrypted, seconds = _timed(lambda: [public.encrypt(v) for v in values])
    _, add_seconds = _timed(lambda: [a + b for a, b in zip(encrypted, encrypted[1:] + encrypted[:1])])
    decrypted, decrypt_seconds = _timed(lambda: [private.decrypt(c) for c in encrypted])
    assert decrypted == values
    width = (public.nsquare.bit_length() + 7) // 8
    return {
        "values_measured": count,
        "client_seconds_per_parameter": seconds / count,
        "server_aggregation_seconds_per_parameter": add_seconds / count,
        "decryption_seconds_per_parameter": decrypt_seconds / count,
        "ciphertext_bytes_per_parameter": width,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimensions", type=int, nargs="+", default=[100_000, 1_000_000])
    parser.add_argument("--uploads", type=int, default=4, help="client uploads the server aggregates")
    parser.add_argument("--rounds", type=int, default=20, help="rounds the key set-up is amortised over")
    parser.add_argument("--paillier-dimension", type=int, default=100_000,
                        help="largest D our Paillier is measured at (per-parameter costs are linear in D)")
    parser.add_argument("--phe-values", type=int, default=200)
    parser.add_argument("--degree", type=int, nargs="*", default=[8192],
                        help="BFV poly modulus degrees measured besides the default (at the smallest dimension)")
    args = parser.parse_args()
    uploads = max(2, args.uploads)

    paillier_keys, paillier_keygen = _timed(lambda: KeyHolder.generate(2048))
    phe = _phe(paillier_keys, args.phe_values)
    report: dict[str, Any] = {
        "configuration": {"encoding": dataclasses.asdict(Encoding()), "uploads": uploads, "cores": os.cpu_count(),
                          "python": platform.python_version(), "paillier_key_bits": 2048,
                          "paillier_keygen_seconds": paillier_keygen},
        "phe": phe,
        "by_dimension": [],
    }
    paillier_cache: dict[int, dict] = {}
    for d in args.dimensions:
        bfv = _bfv(d, uploads, args.rounds, None)
        measured = min(d, args.paillier_dimension)
        if measured not in paillier_cache:
            paillier_cache[measured] = _paillier(measured, uploads, paillier_keys)
        paillier = dict(paillier_cache[measured])
        paillier["server_aggregation_seconds_per_client"] *= d / measured  # linear in D
        paillier["dimension"], paillier["measured_dimension"] = d, measured
        bfv_client = bfv["client_seconds_per_parameter_with_amortised_setup"]
        client_ratio = paillier["client_seconds_per_parameter"] / bfv_client
        entry = {
            "dimension": d,
            "bfv": bfv,
            "paillier_default": paillier,
            "ratios": {
                "client_paillier_over_bfv_setup_included": client_ratio,
                "client_phe_over_bfv": phe["client_seconds_per_parameter"] / bfv["client_seconds_per_parameter"],
                "server_paillier_over_bfv": paillier["server_aggregation_seconds_per_client"]
                / bfv["server_aggregation_seconds_per_client"],
                "decryption_paillier_over_bfv": paillier["decryption_seconds_per_parameter"]
                / bfv["decryption_seconds_per_parameter"],
                "bytes_bfv_over_paillier": bfv["ciphertext_bytes_per_parameter"]
                / paillier["ciphertext_bytes_per_parameter"],
            },
            "targets": {
                "client_speedup_vs_default_paillier": TARGET_CLIENT_SPEEDUP_VS_PAILLIER,
                "met": client_ratio >= TARGET_CLIENT_SPEEDUP_VS_PAILLIER,
                "paillier_bytes_per_parameter_reference": PAILLIER_BYTES_PER_PARAMETER,
            },
        }
        report["by_dimension"].append(entry)
    smallest = min(args.dimensions)
    report["bfv_other_degrees"] = [_bfv(smallest, uploads, args.rounds, degree) for degree in args.degree]
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
