"""Pairwise-mask secure aggregation with dropout recovery: SecAgg and SecAgg+.

SecAgg (Bonawitz et al., "Practical Secure Aggregation for Privacy-Preserving
Machine Learning", CCS 2017) on the complete graph, and SecAgg+ (Bell et al.,
"Secure Single-Server Aggregation with (Poly)Logarithmic Overhead", CCS 2020)
on a random k-regular graph, as sans-I/O engines. Each client sends

    y_u = x_u + PRG(b_u) + sum_{v ~ u} +/- PRG(s_uv)   (mod 2^k)

and Shamir-shares b_u and its mask private key among its neighbourhood, so the
server can cancel the masks of whoever dropped and learns only the sum of the
survivors' inputs. Phases: [commit-coins (malicious-server SecAgg+)],
advertise-keys, share-keys, masked-input, [consistency-check (malicious-server
mode)], unmasking. Against a malicious server the SecAgg+ graph is drawn from
coins the clients commit to first and reveal with their keys, so the server
cannot choose it.

Modules: ``protocol`` (the SecAgg configuration), ``config`` (thresholds,
round parameters), ``graph`` (who masks with whom), ``messages``, ``labels``
(domain separation), ``primitives`` (batched X25519 + HKDF and in-place
AES-CTR mask accumulation), ``masking`` (the masking equation), ``client``
and ``server`` (the engines). Spec: ``protocols/secagg.md``.
"""

from securefl.protocols.secagg.config import Parameters, resolve_threshold
from securefl.protocols.secagg.messages import (
    ADVERTISE_KEYS,
    COMMIT_COINS,
    CONSISTENCY_CHECK,
    MASKED_INPUT,
    SHARE_KEYS,
    UNMASKING,
    AdvertiseRequest,
    CoinCommitment,
    CoinCommitRequest,
    ConsistencyRequest,
    ConsistencySignature,
    EncryptedShares,
    KeyAdvertisement,
    MaskedInput,
    MaskedInputRequest,
    ShareKeysRequest,
    UnmaskRequest,
    UnmaskShares,
)
from securefl.protocols.secagg.protocol import SecAgg

__all__ = [
    "SecAgg",
    "Parameters",
    "resolve_threshold",
    "COMMIT_COINS",
    "ADVERTISE_KEYS",
    "SHARE_KEYS",
    "MASKED_INPUT",
    "CONSISTENCY_CHECK",
    "UNMASKING",
    "CoinCommitRequest",
    "CoinCommitment",
    "AdvertiseRequest",
    "KeyAdvertisement",
    "ShareKeysRequest",
    "EncryptedShares",
    "MaskedInputRequest",
    "MaskedInput",
    "ConsistencyRequest",
    "ConsistencySignature",
    "UnmaskRequest",
    "UnmaskShares",
]
