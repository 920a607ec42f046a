"""Regenerate protocols/vectors/messages.json from the current message codec.

    .venv/bin/python tests/protocols/generate_message_vectors.py

Canonical cases: fixed field values of every message kind of every protocol
and their exact bytes. Adversarial cases: encodings that every decoder must
refuse (a second spelling of a valid message, a field of the wrong size, bytes
missing or left over). tests/protocols/test_message_vectors.py re-derives every
canonical encoding from the field values with plain msgpack and int.to_bytes,
without securefl's codec, so a vector that merely echoed a codec bug would
fail. Changing a canonical encoding here is a wire-format change.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import sys
from pathlib import Path

import msgpack
import numpy as np

ROOT = Path(__file__).resolve().parents[2]
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

from securefl.errors import InvalidMessage  # noqa: E402
from securefl.protocols import paillier, plaintext, secret_sharing  # noqa: E402
from securefl.protocols.lattice import messages as bfv  # noqa: E402  (the codec needs no TenSEAL)
from securefl.protocols.secagg import messages as secagg  # noqa: E402
from securefl.protocols.validated import messages as validated  # noqa: E402
from securefl.protocols.wire import SERVER, Message, client_id, decode_message  # noqa: E402
from tests.protocols.message_json import protocol_kinds, to_json  # noqa: E402

VECTORS = ROOT / "protocols" / "vectors"
SESSION = bytes(range(16))


def _bytes(label: str, size: int) -> bytes:
    """``size`` fixed pseudo-random bytes named by ``label``."""
    return hashlib.shake_256(f"securefl message vector {label}".encode()).digest(size)


def _share(label: str, x: int) -> bytes:
    """A ``Share.to_bytes()``-shaped value: x, secret length 32, a 33-byte element below 2^256."""
    return x.to_bytes(2, "big") + (32).to_bytes(2, "big") + b"\x00" + _bytes(label, 32)


def _ring(values: list[int], ring_bits: int) -> np.ndarray:
    from securefl import ring

    return np.array(values, dtype=np.uint64).astype(ring.ring_dtype(ring_bits))


def _header(phase: str, sender: str, recipient: str, *, round: int = 3, session: bytes = SESSION) -> dict:
    return dict(session=session, round=round, phase=phase, sender=sender, recipient=recipient)


def _advertised(v: int, *, signed: bool) -> secagg.AdvertisedKeys:
    return secagg.AdvertisedKeys(share_public=_bytes(f"share public {v}", 32),
                                 mask_public=_bytes(f"mask public {v}", 32),
                                 signature=_bytes(f"advertise signature {v}", 64) if signed else b"")


def _sealed(sender: int, recipient: int) -> bytes:
    return _bytes(f"sealed shares {sender} -> {recipient}", secagg.SEALED_SHARES_BYTES)


def _canonical_messages() -> list[tuple[str, Message]]:
    c0, c1, c2 = client_id(0), client_id(1), client_id(2)
    a0, a1 = secret_sharing.aggregator_id(0), secret_sharing.aggregator_id(1)
    decryptor = paillier.DECRYPTOR
    return [
        # plaintext
        ("request; round 0", plaintext.UploadRequest(**_header("upload", SERVER, c0, round=0))),
        ("32-bit ring: 4 bytes per coordinate", plaintext.PlaintextUpload(
            **_header("upload", c1, SERVER), ring_bits=32, vector=_ring([0, 1, 2**32 - 1, 123456789], 32))),
        ("20-bit ring: 3 bytes per coordinate, high 4 bits zero", plaintext.PlaintextUpload(
            **_header("upload", c1, SERVER), ring_bits=20, vector=_ring([0, 1, 2**20 - 1, 0xABCDE, 0x10000], 20))),
        ("64-bit ring, round 2^32 (a 9-byte integer)", plaintext.PlaintextUpload(
            **_header("upload", c2, SERVER, round=2**32), ring_bits=64,
            vector=_ring([2**64 - 1, 2**63, 1], 64))),
        ("empty vector; round 2^64 - 1", plaintext.PlaintextUpload(
            **_header("upload", c0, SERVER, round=2**64 - 1), ring_bits=32, vector=_ring([], 32))),
        # secret sharing
        ("request", secret_sharing.UploadRequest(**_header("upload", SERVER, c2))),
        ("16-bit ring", secret_sharing.VectorShare(
            **_header("upload", c2, a0), ring_bits=16, vector=_ring([65535, 0, 4660, 22136], 16))),
        ("32-byte seed", secret_sharing.SeedShare(**_header("upload", c2, a1), seed=_bytes("seed 2 1", 32))),
        ("request", secret_sharing.ReportRequest(**_header("report", SERVER, a1))),
        ("three clients", secret_sharing.ReceivedReport(**_header("report", a1, SERVER), clients=(0, 1, 2))),
        ("no client", secret_sharing.ReceivedReport(**_header("report", a0, SERVER), clients=())),
        ("included clients", secret_sharing.AggregateRequest(**_header("aggregate", SERVER, a0), included=(0, 2))),
        ("13-bit ring: 2 bytes per coordinate", secret_sharing.AggregateShare(
            **_header("aggregate", a1, SERVER), ring_bits=13, vector=_ring([8191, 0, 4096], 13))),
        ("8-bit ring", secret_sharing.AggregateShare(
            **_header("aggregate", a0, SERVER), ring_bits=8, vector=_ring([255, 128, 0, 1], 8))),
        # SecAgg
        ("malicious-server SecAgg+: commit to a graph coin", secagg.CoinCommitRequest(
            **_header(secagg.COMMIT_COINS, SERVER, c1))),
        ("32-byte commitment", secagg.CoinCommitment(
            **_header(secagg.COMMIT_COINS, c1, SERVER), commitment=_bytes("coin commitment 1", 32))),
        ("request", secagg.AdvertiseRequest(**_header(secagg.ADVERTISE_KEYS, SERVER, c1), coin_commitments={})),
        ("malicious-server SecAgg+: every committed client's coin commitment", secagg.AdvertiseRequest(
            **_header(secagg.ADVERTISE_KEYS, SERVER, c1),
            coin_commitments={v: _bytes(f"coin commitment {v}", 32) for v in (0, 1, 3)})),
        ("semi-honest: empty signature", secagg.KeyAdvertisement(
            **_header(secagg.ADVERTISE_KEYS, c1, SERVER), share_public=_bytes("share public 1", 32),
            mask_public=_bytes("mask public 1", 32), signature=b"", coin=b"")),
        ("malicious-server mode: 64-byte signature", secagg.KeyAdvertisement(
            **_header(secagg.ADVERTISE_KEYS, c1, SERVER), share_public=_bytes("share public 1", 32),
            mask_public=_bytes("mask public 1", 32), signature=_bytes("advertise signature 1", 64), coin=b"")),
        ("malicious-server SecAgg+: signature and the revealed 32-byte coin", secagg.KeyAdvertisement(
            **_header(secagg.ADVERTISE_KEYS, c1, SERVER), share_public=_bytes("share public 1", 32),
            mask_public=_bytes("mask public 1", 32), signature=_bytes("advertise signature 1", 64),
            coin=_bytes("coin 1", 32))),
        ("semi-honest: three neighbours' keys, unsigned", secagg.ShareKeysRequest(
            **_header(secagg.SHARE_KEYS, SERVER, c1), keys={v: _advertised(v, signed=False) for v in (0, 2, 3)},
            coins={})),
        ("malicious-server mode: two neighbours' signed keys", secagg.ShareKeysRequest(
            **_header(secagg.SHARE_KEYS, SERVER, c0), keys={v: _advertised(v, signed=True) for v in (1, 2)},
            coins={})),
        ("malicious-server SecAgg+: two neighbours' signed keys, every revealed coin", secagg.ShareKeysRequest(
            **_header(secagg.SHARE_KEYS, SERVER, c0), keys={v: _advertised(v, signed=True) for v in (1, 3)},
            coins={v: _bytes(f"coin {v}", 32) for v in (0, 1, 3)})),
        ("no neighbour", secagg.ShareKeysRequest(**_header(secagg.SHARE_KEYS, SERVER, c0), keys={}, coins={})),
        ("102-byte ciphertexts to three neighbours", secagg.EncryptedShares(
            **_header(secagg.SHARE_KEYS, c1, SERVER), ciphertexts={v: _sealed(1, v) for v in (0, 2, 3)},
            self_mask_commitment=_bytes("self-mask commitment 1", 32))),
        ("ciphertexts from two neighbours", secagg.MaskedInputRequest(
            **_header(secagg.MASKED_INPUT, SERVER, c1), ciphertexts={v: _sealed(v, 1) for v in (0, 3)})),
        ("32-bit ring", secagg.MaskedInput(
            **_header(secagg.MASKED_INPUT, c1, SERVER), ring_bits=32, vector=_ring([3, 2**31, 2**32 - 2], 32))),
        ("20-bit ring", secagg.MaskedInput(
            **_header(secagg.MASKED_INPUT, c1, SERVER), ring_bits=20, vector=_ring([0xFFFFF, 0x12345, 7], 20))),
        ("survivor set", secagg.ConsistencyRequest(
            **_header(secagg.CONSISTENCY_CHECK, SERVER, c1), survivors=(0, 1, 3, 4))),
        ("64-byte signature", secagg.ConsistencySignature(
            **_header(secagg.CONSISTENCY_CHECK, c1, SERVER), signature=_bytes("consistency signature 1", 64))),
        ("semi-honest: no signature", secagg.UnmaskRequest(
            **_header(secagg.UNMASKING, SERVER, c1), survivors=(0, 1, 3), dropped=(2,), signatures={})),
        ("malicious-server mode: the neighbourhood's signatures", secagg.UnmaskRequest(
            **_header(secagg.UNMASKING, SERVER, c1), survivors=(0, 1, 3), dropped=(2,),
            signatures={v: _bytes(f"consistency signature {v}", 64) for v in (0, 1, 3)})),
        ("37-byte shares of survivors and of a dropped client", secagg.UnmaskShares(
            **_header(secagg.UNMASKING, c1, SERVER),
            self_mask_shares={v: _share(f"self-mask share {v}", 2) for v in (0, 1, 3)},
            mask_key_shares={2: _share("mask-key share 2", 2)})),
        # Paillier
        ("request", paillier.UploadRequest(**_header(paillier.UPLOAD, SERVER, c0))),
        ("two 64-byte ciphertexts (toy key size)", paillier.EncryptedUpload(
            **_header(paillier.UPLOAD, c0, SERVER), key_id=_bytes("key id", 16), length=5,
            ciphertexts=_bytes("ciphertexts 0", 128))),
        ("product of the included clients' ciphertexts", paillier.DecryptRequest(
            **_header(paillier.DECRYPT, SERVER, decryptor), key_id=_bytes("key id", 16), included=(0, 2, 3),
            length=5, ciphertexts=_bytes("product", 128))),
        ("24-bit ring", paillier.DecryptedSum(
            **_header(paillier.DECRYPT, decryptor, SERVER), ring_bits=24,
            vector=_ring([0xFFFFFF, 1, 0, 0x800000], 24))),
        # BFV: two toy "ciphertexts" per upload (opaque bytes to the codec)
        ("request", bfv.UploadRequest(**_header(bfv.UPLOAD, SERVER, c0))),
        ("two serialized ciphertexts (toy sizes)", bfv.EncryptedUpload(
            **_header(bfv.UPLOAD, c0, SERVER), key_id=_bytes("bfv key id", 16), length=5,
            ciphertexts=(_bytes("bfv ciphertext 0", 40), _bytes("bfv ciphertext 1", 24)))),
        ("sum of the included clients' ciphertexts", bfv.DecryptRequest(
            **_header(bfv.DECRYPT, SERVER, bfv.DECRYPTOR), key_id=_bytes("bfv key id", 16), included=(0, 2, 3),
            length=5, ciphertexts=(_bytes("bfv sum 0", 40),))),
        ("24-bit ring", bfv.DecryptedSum(
            **_header(bfv.DECRYPT, bfv.DECRYPTOR, SERVER), ring_bits=24,
            vector=_ring([0xFFFFFF, 1, 0, 0x800000], 24))),
        # validated sharing (elements of F_p, p = 2^64 - 2^32 + 1, as (low, high) 32-bit word pairs)
        ("request", validated.UploadRequest(**_header("upload", SERVER, c1))),
        ("three field elements", validated.WitnessShare(
            **_header("upload", c1, a0), ring_bits=32, vector=_ring([0, 0, 1, 0, 0, 2**32 - 1], 32))),
        ("32-byte seed", validated.WitnessSeed(**_header("upload", c1, a1), seed=_bytes("witness seed 1", 32))),
        ("request", validated.ChallengeRequest(**_header("challenge", SERVER, a0))),
        ("two clients, a seed and its signature", validated.ChallengeSeed(
            **_header("challenge", a1, SERVER), clients=(0, 2), seed=_bytes("joint seed 1", 32),
            signature=_bytes("joint seed signature 1", 64))),
        ("two aggregators' seeds and signatures", validated.ProveRequest(
            **_header("prove", SERVER, c2), joint_seeds=(_bytes("joint seed 0", 32), _bytes("joint seed 1", 32)),
            signatures=(_bytes("joint seed signature 0", 64), _bytes("joint seed signature 1", 64)))),
        ("two field elements", validated.ProofShare(
            **_header("prove", c2, a0), ring_bits=32, vector=_ring([7, 0, 0, 2**31], 32))),
        ("32-byte seed", validated.ProofSeed(**_header("prove", c2, a1), seed=_bytes("proof seed 2", 32))),
        ("two aggregators' seeds", validated.QueryRequest(
            **_header("query", SERVER, a1), joint_seeds=(_bytes("joint seed 0", 32), _bytes("joint seed 1", 32)))),
        ("one client and a seed", validated.QuerySeed(
            **_header("query", a0, SERVER), clients=(2,), seed=_bytes("query seed 0", 32))),
        ("two clients, two seeds", validated.VerifyRequest(
            **_header("verify", SERVER, a0), included=(0, 2),
            query_seeds=(_bytes("query seed 0", 32), _bytes("query seed 1", 32)))),
        ("digest and verifier shares", validated.VerifierShare(
            **_header("exchange", a0, a1), digest=_bytes("digest", 32), ring_bits=32,
            vector=_ring([3, 0, 5, 0, 0, 2**32 - 1], 32))),
        ("one accepted, one rejected", validated.VerifyReport(
            **_header("verify", a1, SERVER), accepted=(0,), rejected={2: "norm-exceeded"})),
        ("two accepted clients", validated.AggregateRequest(**_header("aggregate", SERVER, a1), included=(0, 2))),
        ("a field vector", validated.AggregateShare(
            **_header("aggregate", a0, SERVER), ring_bits=32, vector=_ring([0, 2**32 - 1, 0, 0, 9, 0], 32))),
    ]


# -- adversarial encodings ------------------------------------------------------------------------------


def _parts(message: Message) -> tuple[str, list[bytes], bytes]:
    """(kind, each header field as its own msgpack bytes, the vector bytes) of a canonical encoding."""
    data = message.to_bytes()
    unpacker = msgpack.Unpacker(raw=False, strict_map_key=False)
    unpacker.feed(data)
    kind, values = unpacker.unpack()
    return kind, [msgpack.packb(v, use_bin_type=True) for v in values], data[unpacker.tell():]


def _assemble(kind: str, parts: list[bytes], tail: bytes) -> bytes:
    assert len(parts) < 16
    return b"\x92" + msgpack.packb(kind) + bytes([0x90 | len(parts)]) + b"".join(parts) + tail


def _spliced(message: Message, field: str, raw: bytes) -> bytes:
    """The canonical encoding of ``message`` with ``field`` written as the msgpack bytes ``raw``."""
    kind, parts, tail = _parts(message)
    parts[[f.name for f in dataclasses.fields(message)].index(field)] = raw
    return _assemble(kind, parts, tail)


def _packed(value: object) -> bytes:
    return msgpack.packb(value, use_bin_type=True)


def _bin(size: int, label: str = "x") -> bytes:
    return _packed(_bytes(label, size))


def _adversarial_cases(messages: dict[str, Message]) -> list[tuple[str, str, bytes]]:
    masked = messages["secagg/masked-input 32-bit ring"]
    masked20 = messages["secagg/masked-input 20-bit ring"]
    advertisement = messages["secagg/key-advertisement malicious-server mode: 64-byte signature"]
    share_keys = messages["secagg/share-keys-request malicious-server mode: two neighbours' signed keys"]
    shares = messages["secagg/encrypted-shares 102-byte ciphertexts to three neighbours"]
    unmask = messages["secagg/unmask-request malicious-server mode: the neighbourhood's signatures"]
    unmask_shares = messages["secagg/unmask-shares 37-byte shares of survivors and of a dropped client"]
    consistency = messages["secagg/consistency-signature 64-byte signature"]
    seed = messages["secret-sharing/seed-share 32-byte seed"]
    report = messages["secret-sharing/received three clients"]
    upload = messages["paillier/encrypted-upload two 64-byte ciphertexts (toy key size)"]
    request = messages["secagg/advertise-request request"]
    coin_list = messages["secagg/advertise-request malicious-server SecAgg+: every committed client's coin commitment"]
    revealing = messages["secagg/key-advertisement malicious-server SecAgg+: signature and the revealed 32-byte coin"]
    coins = messages["secagg/share-keys-request malicious-server SecAgg+: two neighbours' signed keys, every "
                     "revealed coin"]
    coin_commitment = messages["secagg/coin-commitment 32-byte commitment"]
    signed = [_bytes("share public 1", 32), _bytes("mask public 1", 32), _bytes("advertise signature 1", 64)]
    entry2 = _packed([_bytes("share public 2", 32), _bytes("mask public 2", 32), _bytes("advertise signature 2", 64)])
    entry1 = _packed(signed)
    data = masked.to_bytes()
    kind, parts, tail = _parts(masked)
    high_bits = bytearray(masked20.to_bytes())
    high_bits[-1] |= 0x10  # bit 20 of the last coordinate
    cases = [
        # a second spelling of a valid message
        (masked, "round 3 as uint64 (9 bytes, not 1)", _spliced(masked, "round", b"\xcf" + (3).to_bytes(8, "big"))),
        (masked, "round 3 as uint8", _spliced(masked, "round", b"\xcc\x03")),
        (masked, "round 3 as int8", _spliced(masked, "round", b"\xd0\x03")),
        (masked, "ring_bits 32 as uint16", _spliced(masked, "ring_bits", b"\xcd\x00\x20")),
        (masked, "phase as str8", _spliced(masked, "phase", b"\xd9\x0c" + b"masked-input")),
        (masked, "session as bin32", _spliced(masked, "session", b"\xc6\x00\x00\x00\x10" + SESSION)),
        (masked, "fields as array16", b"\x92" + msgpack.packb(kind) + b"\xdc\x00\x07" + b"".join(parts) + tail),
        (masked, "message as array16", b"\xdc\x00\x02" + msgpack.packb(kind) + bytes([0x97]) + b"".join(parts)
         + tail),
        (masked, "kind as str8", b"\x92\xd9" + bytes([len(kind)]) + kind.encode() + bytes([0x97]) + b"".join(parts)
         + tail),
        (masked, "vector extension as ext8, not fixext8",
         _spliced(masked, "vector", b"\xc7\x08\x20" + (len(tail)).to_bytes(8, "little"))),
        (share_keys, "map keys out of order (2 before 1)", _spliced(share_keys, "keys", b"\x82\x02" + entry2 + b"\x01"
                                                                   + entry1)),
        (share_keys, "a map key twice", _spliced(share_keys, "keys", b"\x82\x01" + entry1 + b"\x01" + entry1)),
        (share_keys, "map as map16", _spliced(share_keys, "keys", b"\xde\x00\x02\x01" + entry1 + b"\x02" + entry2)),
        (share_keys, "map key 1 as uint8", _spliced(share_keys, "keys", b"\x82\xcc\x01" + entry1 + b"\x02" + entry2)),
        (report, "array item 1 as uint16", _spliced(report, "clients", b"\x93\x00\xcd\x00\x01\x02")),
        # wrong types
        (masked, "round as true", _spliced(masked, "round", b"\xc3")),
        (masked, "round as float64", _spliced(masked, "round", b"\xcb" + np.float64(3).tobytes()[::-1])),
        (masked, "phase as bin", _spliced(masked, "phase", _packed(b"masked-input"))),
        (masked, "session as str", _spliced(masked, "session", _packed("0123456789abcdef"))),
        (share_keys, "map key as str", _spliced(share_keys, "keys", b"\x82\xa11" + entry1 + b"\xa12" + entry2)),
        (share_keys, "advertised keys as a map", _spliced(share_keys, "keys", _packed(
            {1: dict(zip(["share_public", "mask_public", "signature"], signed, strict=True))}))),
        (share_keys, "advertised keys: two fields", _spliced(share_keys, "keys", _packed({1: signed[:2]}))),
        (share_keys, "advertised keys: four fields", _spliced(share_keys, "keys", _packed({1: [*signed, b""]}))),
        (share_keys, "advertised keys as the old concatenation", _spliced(share_keys, "keys", _packed(
            {1: b"".join(signed)}))),
        (request, "unknown kind", _assemble("secagg/advertise-requests", _parts(request)[1], b"")),
        (request, "one field too many", _assemble(request.KIND, [*_parts(request)[1], b"\x00"], b"")),
        (request, "one field too few", _assemble(request.KIND, _parts(request)[1][:-1], b"")),
        # wrong sizes
        (masked, "session of 15 bytes", _spliced(masked, "session", _packed(SESSION[:15]))),
        (masked, "session of 17 bytes", _spliced(masked, "session", _packed(SESSION + b"\x00"))),
        (advertisement, "share public key of 31 bytes", _spliced(advertisement, "share_public", _bin(31))),
        (advertisement, "mask public key of 33 bytes", _spliced(advertisement, "mask_public", _bin(33))),
        (advertisement, "signature of 63 bytes", _spliced(advertisement, "signature", _bin(63))),
        (advertisement, "signature of 65 bytes", _spliced(advertisement, "signature", _bin(65))),
        (advertisement, "signature of 1 byte", _spliced(advertisement, "signature", _bin(1))),
        (share_keys, "advertised signature of 63 bytes", _spliced(share_keys, "keys", _packed(
            {1: [*signed[:2], signed[2][:63]]}))),
        (share_keys, "advertised share public key of 33 bytes", _spliced(share_keys, "keys", _packed(
            {1: [signed[0] + b"\x00", *signed[1:]]}))),
        (shares, "ciphertext of 101 bytes", _spliced(shares, "ciphertexts", _packed(
            {0: _bytes("c", 101), 2: _bytes("c", 102), 3: _bytes("c", 102)}))),
        (shares, "ciphertext of 103 bytes", _spliced(shares, "ciphertexts", _packed(
            {0: _bytes("c", 102), 2: _bytes("c", 103), 3: _bytes("c", 102)}))),
        (shares, "commitment of 31 bytes", _spliced(shares, "self_mask_commitment", _bin(31))),
        (coin_commitment, "coin commitment of 31 bytes", _spliced(coin_commitment, "commitment", _bin(31))),
        (coin_commitment, "coin commitment of 33 bytes", _spliced(coin_commitment, "commitment", _bin(33))),
        (coin_commitment, "coin commitment empty", _spliced(coin_commitment, "commitment", _bin(0))),
        (coin_list, "a coin commitment of 33 bytes", _spliced(coin_list, "coin_commitments", _packed(
            {0: _bytes("c", 32), 1: _bytes("c", 33), 3: _bytes("c", 32)}))),
        (coin_list, "coin commitments as a list", _spliced(coin_list, "coin_commitments", _packed(
            [_bytes("c", 32)] * 3))),
        (revealing, "coin of 31 bytes", _spliced(revealing, "coin", _bin(31))),
        (revealing, "coin of 33 bytes", _spliced(revealing, "coin", _bin(33))),
        (coins, "revealed coin of 31 bytes", _spliced(coins, "coins", _packed(
            {0: _bytes("c", 32), 1: _bytes("c", 31), 3: _bytes("c", 32)}))),
        (coins, "an empty revealed coin (always 32 bytes here)", _spliced(coins, "coins", _packed(
            {0: _bytes("c", 32), 1: b"", 3: _bytes("c", 32)}))),
        (coins, "coin map keys out of order", _spliced(coins, "coins", b"\x83\x00" + _bin(32) + b"\x03" + _bin(32)
                                                       + b"\x01" + _bin(32))),
        (shares, "commitment of 33 bytes", _spliced(shares, "self_mask_commitment", _bin(33))),
        (consistency, "empty signature (always 64 bytes here)", _spliced(consistency, "signature", _bin(0))),
        (unmask, "consistency signature of 65 bytes", _spliced(unmask, "signatures", _packed(
            {0: _bytes("s", 64), 1: _bytes("s", 65), 3: _bytes("s", 64)}))),
        (unmask_shares, "share of 36 bytes", _spliced(unmask_shares, "mask_key_shares", _packed(
            {2: _share("m", 2)[:36]}))),
        (unmask_shares, "share of 38 bytes", _spliced(unmask_shares, "self_mask_shares", _packed(
            {0: _share("m", 2) + b"\x00", 1: _share("m", 2), 3: _share("m", 2)}))),
        (seed, "seed of 31 bytes", _spliced(seed, "seed", _bin(31))),
        (seed, "seed of 33 bytes", _spliced(seed, "seed", _bin(33))),
        (upload, "key id of 15 bytes", _spliced(upload, "key_id", _bin(15))),
        (upload, "key id of 17 bytes", _spliced(upload, "key_id", _bin(17))),
        # vector bytes
        (masked20, "a coordinate with an unused high bit set (value >= 2^20)", bytes(high_bits)),
        (masked, "declares ring_bits 32, carries a 16-bit vector",
         _spliced(masked, "vector", b"\xd7\x10" + (len(tail)).to_bytes(8, "little"))),
        (masked, "vector of 11 bytes: not whole 4-byte coordinates",
         _spliced(masked, "vector", b"\xd7\x20" + (11).to_bytes(8, "little"))[:-1]),
        (masked, "one trailing byte", data + b"\x00"),
        (request, "one trailing byte after a message without vectors", request.to_bytes() + b"\x00"),
        (masked, "one byte short", data[:-1]),
        (masked, "header cut short", data[:20]),
        (masked, "vector extension announces more bytes than follow",
         _spliced(masked, "vector", b"\xd7\x20" + (len(tail) + 4).to_bytes(8, "little"))),
        (masked, "extension type 65 (no ring that wide)",
         _spliced(masked, "vector", b"\xd7\x41" + (len(tail)).to_bytes(8, "little"))),
        (masked, "empty", b""),
    ]
    return [(message.KIND, comment, encoding) for message, comment, encoding in cases]


def _dumps(value: object, indent: int = 0) -> str:
    """JSON with objects one key per line and lists of scalars kept on one line (as tests/crypto's vectors)."""
    pad, inner = " " * indent, " " * (indent + 2)
    if isinstance(value, dict) and value:
        items = [f"{inner}{json.dumps(key)}: {_dumps(item, indent + 2)}" for key, item in value.items()]
        return "{\n" + ",\n".join(items) + "\n" + pad + "}"
    if isinstance(value, list) and any(isinstance(item, (dict, list)) for item in value):
        items = [inner + _dumps(item, indent + 2) for item in value]
        return "[\n" + ",\n".join(items) + "\n" + pad + "]"
    return json.dumps(value)


def main() -> None:
    canonical = _canonical_messages()
    kinds = {message.KIND for _, message in canonical}
    missing = set(protocol_kinds()) - kinds
    if missing:
        raise SystemExit(f"no canonical vector for {sorted(missing)}")
    cases = []
    by_name = {}
    for comment, message in canonical:
        encoding = message.to_bytes()
        decoded = decode_message(encoding)
        assert decoded.to_bytes() == encoding and to_json(decoded) == to_json(message), comment
        by_name[f"{message.KIND} {comment}"] = message
        cases.append({"section": "canonical", "kind": message.KIND, "comment": comment, "fields": to_json(message),
                      "encoding": encoding.hex()})
    for kind, comment, encoding in _adversarial_cases(by_name):
        try:
            decode_message(encoding)
        except InvalidMessage:
            pass
        else:
            raise SystemExit(f"adversarial case {kind}: {comment!r} decodes")
        cases.append({"section": "adversarial", "kind": kind, "comment": comment, "encoding": encoding.hex()})
    document = {
        "description": (
            "Canonical encodings of every securefl protocol message (section 'canonical': field values and "
            "their exact bytes) and encodings every decoder must refuse (section 'adversarial')"
        ),
        "generated_by": "tests/protocols/generate_message_vectors.py",
        "cases": cases,
    }
    path = VECTORS / "messages.json"
    path.write_text(_dumps(document) + "\n", encoding="utf-8")
    print(f"wrote {path.relative_to(ROOT)}: {len(cases)} cases")


if __name__ == "__main__":
    main()
