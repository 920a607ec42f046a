"""Shared helpers for protocol tests: random ring inputs and their exact sum."""

from __future__ import annotations

import numpy as np

from securefl import ring


def random_inputs(clients: int, length: int, ring_bits: int, seed: int) -> list[np.ndarray]:
    rng = np.random.default_rng(seed)
    dtype = ring.ring_dtype(ring_bits)
    high = 1 << ring_bits
    return [rng.integers(0, high, size=length, dtype=np.uint64).astype(dtype) for _ in range(clients)]


def ring_sum(inputs: list[np.ndarray], indices, ring_bits: int) -> np.ndarray:
    total = np.zeros_like(inputs[0])
    for index in indices:
        ring.add(total, inputs[index], ring_bits)
    return total


def bounded_inputs(protocol, clients: int, length: int, seed: int, *, extreme: str | None = None) -> list[np.ndarray]:
    """Ring vectors whose signed values lie in [-B, B], B = ``protocol.bound`` (a homomorphic protocol's bound).

    ``extreme``: "max" (all B), "min" (all -B), "alternate" (B and -B by
    client and coordinate); else uniform with -B, B and 0 in the first three.
    """
    bound, bits = protocol.bound, protocol.encoding.ring_bits
    rng = np.random.default_rng(seed)
    out = []
    for client in range(clients):
        if extreme == "max":
            signed = np.full(length, bound)
        elif extreme == "min":
            signed = np.full(length, -bound)
        elif extreme == "alternate":
            signed = np.where(np.arange(length) % 2 == client % 2, bound, -bound)
        else:
            signed = rng.integers(-bound, bound + 1, size=length)
            signed[: min(3, length)] = (-bound, bound, 0)[: min(3, length)]
        out.append(ring.from_signed(signed, bits))
    return out


def hand_uploads(protocol, clients: int = 3, length: int = 8, *, round: int = 5):
    """A homomorphic protocol's upload phase driven by hand: (session, parties, inputs, decoded uploads)."""
    import os

    from securefl.protocols.wire import decode_message

    session = os.urandom(16)
    parties = protocol.setup(clients=clients, vector_length=length, session=session, round=round)
    inputs = bounded_inputs(protocol, clients, length, seed=11)
    for engine, vector in zip(parties.clients, inputs):
        engine.provide_input(vector)
    uploads = []
    for request in parties.server.begin_phase("upload"):
        (upload,) = parties.clients[int(request.recipient.split("/")[1])].handle(request)
        uploads.append(decode_message(upload.to_bytes()))
    return session, parties, inputs, uploads


def finish_decryption(parties):
    """Close the upload phase and run the decrypt phase by hand; the server's result."""
    from securefl.protocols.wire import decode_message

    parties.server.end_phase("upload")
    (request,) = parties.server.begin_phase("decrypt")
    for reply in parties.helpers[0].handle(decode_message(request.to_bytes())):
        parties.server.handle(decode_message(reply.to_bytes()))
    parties.server.end_phase("decrypt")
    return parties.server.result()
