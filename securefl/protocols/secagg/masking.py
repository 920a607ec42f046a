"""The masking equation of SecAgg and its inverse at the server.

Client u with input x_u, self-mask seed b_u and mask key pair (s_u, S_u) sends

    y_u = x_u + PRG(b_u, self_label(u)) + sum_{v in M(u)} sign(u, v) * PRG(s_uv, pair_label(u, v))   (mod 2^k)

where M(u) is the set of neighbours that shared keys with u, sign(u, v) = +1
for u < v and -1 for u > v, and s_uv = keys.agree(s_u, S_v, label
"securefl/secagg/v1/pairwise-seed", session, round, parties (u, v)) is the
same 32-byte seed on both ends. Summed over a set of clients closed under
M, every pairwise mask appears once with each sign and cancels.

The server removes what does not cancel: PRG(b_u) of every survivor u, and
for a dropped client v (its key s_v reconstructed) sign(u, v) * PRG(s_uv)
for every survivor u in M(v).
"""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from securefl.protocols.secagg.labels import PAIRWISE_SEED_LABEL, pairwise_mask_labels, self_mask_label
from securefl.protocols.secagg.primitives import AgreementKey, MaskAccumulator, agree_many

__all__ = ["mask_input", "pairwise_seeds", "remove_self_mask", "remove_dropped_masks"]


def pairwise_seeds(
    mask_key: AgreementKey, peer_publics: Mapping[int, bytes], *, client: int, session: bytes, round: int
) -> dict[int, bytes]:
    """s_uv for every peer v (32 bytes each), from X25519 and HKDF with the pair's context."""
    return agree_many(mask_key, peer_publics, own=client, label=PAIRWISE_SEED_LABEL, session=session, round=round)


def mask_input(
    vector: np.ndarray,
    *,
    client: int,
    self_mask_seed: bytes,
    mask_key: AgreementKey,
    peer_publics: Mapping[int, bytes],
    session: bytes,
    round: int,
    ring_bits: int,
) -> np.ndarray:
    """y_u of the module docstring, as a new array (``vector`` is not modified)."""
    seeds = pairwise_seeds(mask_key, peer_publics, client=client, session=session, round=round)
    accumulator = MaskAccumulator.starting_from(vector, ring_bits)
    accumulator.add(self_mask_seed, self_mask_label(session, round, client))
    peers = sorted(seeds)
    for peer, label in zip(peers, pairwise_mask_labels(session, round, client, peers), strict=True):
        accumulator.add(seeds[peer], label, 1 if client < peer else -1)
    return accumulator.finish()


def remove_self_mask(accumulator: MaskAccumulator, *, client: int, seed: bytes, session: bytes, round: int) -> None:
    """total -= PRG(b_u) for one survivor u."""
    accumulator.add(seed, self_mask_label(session, round, client), -1)


def remove_dropped_masks(
    accumulator: MaskAccumulator,
    *,
    dropped: int,
    mask_key: AgreementKey,
    survivor_publics: Mapping[int, bytes],
    session: bytes,
    round: int,
) -> None:
    """total -= sum_u sign(u, v) PRG(s_uv) over the survivors u that masked with dropped client v."""
    seeds = pairwise_seeds(mask_key, survivor_publics, client=dropped, session=session, round=round)
    survivors = sorted(seeds)
    for survivor, label in zip(survivors, pairwise_mask_labels(session, round, dropped, survivors), strict=True):
        # Survivor u added sign(u, v) * p_uv; take it back out.
        accumulator.add(seeds[survivor], label, -1 if survivor < dropped else 1)
