"""Packed Paillier vs phe's per-value encryption, side by side in one run; prints JSON.

    .venv/bin/python benchmarks/paillier.py [--dimension 100000] [--phe-values 200]

Configuration: 2048-bit key, 16-bit values (value_bits=16,
max_weight=1), max_clients=1024, so slots of 26 bits, 78 per plaintext.
Figures, all per parameter unless named otherwise:

- phe baseline: ``PaillierPublicKey.encrypt(v)`` on ``--phe-values`` ints
  (one full r^n exponentiation each; 512-byte ciphertext per value).
- ours, default and fully secure (r^n, r uniform in Z_n^*, DCR):
  ``precompute`` (filling the obfuscator pool, on 1 thread and on all
  cores), ``online`` (client engine: pack, multiply, serialise, with the
  pool already filled, as while training), and ``end_to_end`` = both.
- ours, opt-in short-exponent obfuscation (DCR + short-exponent
  assumption), reported separately.
- bytes of ciphertext per parameter; server aggregation seconds per client
  upload (validate + multiply into the running product); decryption
  seconds per parameter (batched CRT, all cores and 1 thread). The
  decrypted sum is checked against the inputs.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import os
import platform
import secrets
import time

import numpy as np

from securefl import ring
from securefl.protocols.paillier import KeyHolder, Paillier
from securefl.protocols.paillier.obfuscators import FixedBase, Obfuscation, ObfuscatorPool
from securefl.protocols.paillier.parallel import available_cores
from securefl.protocols.wire import client_id, decode_message

TARGET_SPEEDUP = 100.0
TARGET_BYTES_PER_PARAMETER = 8.0


def _timed(call):
    start = time.perf_counter()
    value = call()
    return value, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dimension", type=int, default=100_000)
    parser.add_argument("--phe-values", type=int, default=200)
    parser.add_argument("--key-bits", type=int, default=2048)
    parser.add_argument("--value-bits", type=int, default=16)
    parser.add_argument("--max-clients", type=int, default=1024)
    parser.add_argument("--uploads", type=int, default=4, help="client uploads the server aggregates")
    args = parser.parse_args()
    d = args.dimension

    keys, keygen_seconds = _timed(lambda: KeyHolder.generate(args.key_bits))
    protocol = Paillier(key_holder=keys, value_bits=args.value_bits, max_weight=1, max_clients=args.max_clients,
                        precompute=False)
    layout = protocol.layout
    bits = protocol.encoding.ring_bits
    public = keys.public_key
    width = (public.nsquare.bit_length() + 7) // 8

    # -- phe, one value per ciphertext ---------------------------------------------------------
    sample = [secrets.randbelow(2 * layout.bound + 1) - layout.bound for _ in range(args.phe_values)]
    _, phe_seconds = _timed(lambda: [public.encrypt(v) for v in sample])
    phe_per_value = phe_seconds / args.phe_values

    # -- ours, default (standard r^n) ------------------------------------------------------------
    uploads = max(2, args.uploads)
    session = os.urandom(16)
    parties = protocol.setup(clients=uploads, vector_length=d, session=session, round=0)
    ciphertexts = protocol.ciphertexts_per_client(d)
    rng = np.random.default_rng(0)
    signed = [rng.integers(-layout.bound, layout.bound + 1, size=d) for _ in range(2)]
    requests = parties.server.begin_phase("upload")

    def encrypt(position: int, workers: int | None):
        client = parties.clients[position]
        _, fill = _timed(lambda: client._pool.fill(ciphertexts, workers=workers))
        client.provide_input(ring.from_signed(signed[position], bits))
        (upload,), online = _timed(lambda: client.handle(requests[position]))
        return decode_message(upload.to_bytes()), fill, online

    upload_0, fill_one_core, online_0 = encrypt(0, 1)
    upload_1, fill_all_cores, online_1 = encrypt(1, None)
    online = min(online_0, online_1)

    # -- server: validate and multiply each upload (clients >= 2 replay client 0's bytes) -----
    server_seconds = []
    for position in range(uploads):
        upload = upload_1 if position == 1 else dataclasses.replace(upload_0, sender=client_id(position))
        _, seconds = _timed(functools.partial(parties.server.handle, upload))
        server_seconds.append(seconds)
    parties.server.end_phase("upload")

    # -- decryptor -------------------------------------------------------------------------------
    (request,) = parties.server.begin_phase("decrypt")
    request = decode_message(request.to_bytes())
    (answer,), decrypt_seconds = _timed(lambda: parties.helpers[0].handle(request))
    parties.server.handle(decode_message(answer.to_bytes()))
    parties.server.end_phase("decrypt")
    expected = signed[0] * (uploads - 1) + signed[1]
    exact = bool(np.array_equal(parties.server.result().total, ring.from_signed(expected, bits)))
    sample_ciphertexts = [int.from_bytes(request.ciphertexts[i * width : (i + 1) * width], "big")
                          for i in range(min(ciphertexts, 64))]
    _, decrypt_one_thread = _timed(lambda: keys.decrypt_raw(sample_ciphertexts, workers=1))
    decrypt_one_thread *= ciphertexts / len(sample_ciphertexts)

    # -- opt-in: short-exponent obfuscation ------------------------------------------------------
    short = Obfuscation("short-exponent")
    base, base_seconds = _timed(lambda: FixedBase(public, exponent_bits=short.exponent_bits_for(args.key_bits)))
    pool = ObfuscatorPool(public, short, base=base)
    _, short_fill = _timed(lambda: pool.fill(ciphertexts))
    assert keys.decrypt_raw(pool.take(2)) == [0, 0]

    per = lambda seconds: seconds / d  # noqa: E731
    standard_one = per(fill_one_core + online)
    standard_all = per(fill_all_cores + online)
    short_one = per(short_fill + online)
    bytes_per_parameter = ciphertexts * width / d
    report = {
        "configuration": {
            "key_bits": args.key_bits, "value_bits": args.value_bits, "max_weight": 1,
            "max_clients": args.max_clients, "dimension": d, "slot_bits": layout.slot_bits,
            "slots_per_ciphertext": layout.slots, "ciphertexts_per_client": ciphertexts,
            "ciphertext_bytes": width, "cores": available_cores(), "python": platform.python_version(),
            "keygen_seconds": keygen_seconds,
        },
        "phe_per_value": {"values": args.phe_values, "seconds_per_value": phe_per_value, "bytes_per_value": width},
        "packed_standard": {
            "security": "r^n with r uniform in Z_n^* (DCR only) -- the default",
            "precompute_seconds_per_parameter": {"one_core": per(fill_one_core), "all_cores": per(fill_all_cores)},
            "online_seconds_per_parameter": per(online),
            "end_to_end_seconds_per_parameter": {"one_core": standard_one, "all_cores": standard_all},
            "speedup_vs_phe": {
                "online_pool_prefilled": phe_per_value / per(online),
                "end_to_end_one_core": phe_per_value / standard_one,
                "end_to_end_all_cores": phe_per_value / standard_all,
            },
        },
        "packed_short_exponent_opt_in": {
            "security": f"h_s^a, {base.exponent_bits}-bit a (DCR + short-exponent assumption, DJN 2010)",
            "fixed_base_table_seconds_once": base_seconds,
            "precompute_seconds_per_parameter_one_core": per(short_fill),
            "end_to_end_seconds_per_parameter_one_core": short_one,
            "speedup_vs_phe_end_to_end_one_core": phe_per_value / short_one,
        },
        "bytes": {
            "ciphertext_bytes_per_parameter": bytes_per_parameter,
            "upload_message_bytes_per_parameter": len(upload_0.to_bytes()) / d,
            "phe_bytes_per_value": width,
            "reduction_vs_phe": width / bytes_per_parameter,
        },
        "server_aggregation_seconds_per_client": {
            "first_upload": server_seconds[0], "each_further_upload": float(np.mean(server_seconds[1:])),
        },
        "decryption_seconds_per_parameter": {"all_cores": per(decrypt_seconds), "one_core": per(decrypt_one_thread)},
        "decrypted_sum_exact": exact,
        "targets": {
            "speedup_default_config": TARGET_SPEEDUP,
            "met_online": phe_per_value / per(online) >= TARGET_SPEEDUP,
            "met_end_to_end_one_core": phe_per_value / standard_one >= TARGET_SPEEDUP,
            "met_end_to_end_all_cores": phe_per_value / standard_all >= TARGET_SPEEDUP,
            "bytes_per_parameter": TARGET_BYTES_PER_PARAMETER,
            "met_bytes": bytes_per_parameter <= TARGET_BYTES_PER_PARAMETER,
        },
    }
    print(json.dumps(report, indent=2))


if __name__ == "__main__":
    main()
