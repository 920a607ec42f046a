"""securefl messages inside Flower messages, and the sealed channel to helper parties.

A Flower message of the driver carries two records:

* ``"securefl"`` -- a ``ConfigRecord`` of control fields (operation, session,
  round, phase, the party id the node plays, setup parameters);
* ``"securefl.messages"`` -- an ``ArrayRecord`` whose i-th ``Array`` (key
  ``"000000"``, ``"000001"``, ...) holds one protocol message: ``data`` is
  exactly ``Message.to_bytes()`` (``stype`` ``"securefl/message"``), or a
  sealed envelope of those bytes (``stype`` ``"securefl/sealed"``). The
  receiver rebuilds the message with ``decode_message``, which validates
  every field, so the bytes on the wire are the canonical ones.

Sealed envelopes. Flower is a star: every message passes through the
SuperLink and the ServerApp. A message from a client to a helper party (a
secret-sharing aggregator, the Paillier decryptor) must not be readable
there, or the server would hold every share. The client seals it to the
helper's X25519 transport key, which the helper publishes at discovery:

    e       = fresh X25519 key pair (per message)
    key     = agree(e, helper_transport_public, label, session, round, (sender, recipient))
    sealed  = AES-256-GCM(key, canonical bytes,
                          associated = associated_data(session, round, sender, recipient, label))
    signed  = Ed25519(sender's client key, context(label, session, round, sender, recipient, e_public, sealed))
    envelope = msgpack([recipient, sender, e_public, sealed, signed])

(``securefl.crypto.keys.agree`` is X25519 + HKDF-SHA256 bound to every
field; ``securefl.crypto.aead`` is AES-GCM.) The server routes the envelope
by its recipient and can neither read nor alter it. Sealing proves who can
open an envelope, the signature who sent it: each client node signs with an
Ed25519 key of its own, published at discovery (and kept in its key
directory), and a helper opens only envelopes signed by the key listed for
the sender in the aggregation's ``client-keys``, so a server cannot seal
shares in a client's name. A server that lists keys of its own for clients
it invents (Sybils) is stopped only by pins: helpers and clients whose
operators pinned the clients' fingerprints (:func:`client_fingerprint`)
refuse unpinned keys. A server that substitutes its own key for a helper's
at discovery could read the envelopes: clients that pin the helpers'
fingerprints (see :func:`helper_fingerprint`) refuse such keys.

One model per round. The session every engine of an aggregation runs under
is not the server's session id s but

    bound = SHA-256(context(label, s, digest))[:16],   digest = :func:`content_digest`

of what the client trained on (the global model and the round's config, as
the client received them). Every key agreement, signature and envelope of
the protocol is bound to it, so clients given different models or configs
(Pasquini et al., CCS 2022) run under different sessions: their masks do not
cancel, their signatures do not verify, helpers cannot open their envelopes,
and the round aborts instead of summing one client's update with
zero-updates made to measure.
"""

from __future__ import annotations

import hashlib
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass

import msgpack
from flwr.app import Array, ArrayRecord, ConfigRecord, ConfigRecordValues, MetricRecord, RecordDict

from securefl.crypto import aead
from securefl.crypto.keys import (
    PUBLIC_KEY_BYTES,
    SIGNATURE_BYTES,
    KeyPair,
    SigningKey,
    agree,
    context,
    verify_signature,
)
from securefl.errors import InvalidMessage

__all__ = [
    "CONTROL",
    "MESSAGES",
    "MESSAGE_TYPE",
    "WIRE_VERSION",
    "Entry",
    "pack",
    "unpack",
    "seal_to",
    "open_envelope",
    "envelope_route",
    "helper_fingerprint",
    "client_fingerprint",
    "content_digest",
    "content_digests",
    "bound_session",
    "empty_digest",
    "DIGEST_BYTES",
]

CONTROL = "securefl"
MESSAGES = "securefl.messages"
MESSAGE_TYPE = "query.securefl"
WIRE_VERSION = 2
PLAIN = "securefl/message"
SEALED = "securefl/sealed"
_SEAL_LABEL = "securefl/flower/seal/v1"
_FINGERPRINT_LABEL = "securefl/flower/helper/v1"
_CLIENT_FINGERPRINT_LABEL = "securefl/flower/client/v1"
_CONTENT_LABEL = "securefl/flower/content/v1"
_BOUND_SESSION_LABEL = "securefl/flower/bound-session/v1"
DIGEST_BYTES = 32


@dataclass(frozen=True)
class Entry:
    """One protocol message on the wire: canonical bytes, or a sealed envelope of them."""

    data: bytes
    sealed: bool = False


def pack(
    control: Mapping[str, ConfigRecordValues], entries: Sequence[Entry], extra: RecordDict | None = None
) -> RecordDict:
    """The content of a driver message: control fields, the entries, and any extra records."""
    arrays = {
        f"{position:06d}": Array(
            dtype="uint8", shape=(len(entry.data),), stype=SEALED if entry.sealed else PLAIN, data=bytes(entry.data)
        )
        for position, entry in enumerate(entries)
    }
    content = RecordDict() if extra is None else extra
    content[CONTROL] = ConfigRecord({"wire": WIRE_VERSION, **control})
    content[MESSAGES] = ArrayRecord(arrays)
    return content


def unpack(content: RecordDict) -> tuple[dict[str, ConfigRecordValues], list[Entry]]:
    """(control fields, entries) of a driver message; ``InvalidMessage`` if it is not one."""
    if CONTROL not in content.config_records or MESSAGES not in content.array_records:
        raise InvalidMessage("not a securefl driver message (no securefl records)")
    control = dict(content.config_records[CONTROL])
    if control.get("wire") != WIRE_VERSION:
        raise InvalidMessage(f"driver wire version {control.get('wire')!r}; this node speaks {WIRE_VERSION}")
    entries = []
    for key in sorted(content.array_records[MESSAGES]):
        array = content.array_records[MESSAGES][key]
        if array.stype not in (PLAIN, SEALED):
            raise InvalidMessage(f"entry {key} has stype {array.stype!r}")
        entries.append(Entry(data=bytes(array.data), sealed=array.stype == SEALED))
    return control, entries


def _key(ephemeral: KeyPair, peer_public: bytes, session: bytes, round: int, sender: str, recipient: str) -> bytes:
    return agree(ephemeral, peer_public, label=_SEAL_LABEL, session=session, round=round, parties=(sender, recipient))


def _associated(session: bytes, round: int, sender: str, recipient: str) -> bytes:
    return aead.associated_data(session=session, round=round, sender=sender, recipient=recipient, label=_SEAL_LABEL)


def _signed_fields(session: bytes, round: int, sender: str, recipient: str, ephemeral: bytes, sealed: bytes) -> bytes:
    return context(_SEAL_LABEL, session, round, sender, recipient, ephemeral, sealed)


def seal_to(
    recipient_public: bytes, payload: bytes, *, session: bytes, round: int, sender: str, recipient: str,
    signer: SigningKey,
) -> bytes:
    """An envelope only the holder of ``recipient_public``'s private key opens, signed by ``signer``."""
    ephemeral = KeyPair.generate()
    key = _key(ephemeral, recipient_public, session, round, sender, recipient)
    sealed = aead.seal(key, payload, associated=_associated(session, round, sender, recipient))
    signature = signer.sign(_signed_fields(session, round, sender, recipient, ephemeral.public_bytes, sealed))
    return msgpack.packb([recipient, sender, ephemeral.public_bytes, sealed, signature], use_bin_type=True)


def envelope_route(envelope: bytes) -> tuple[str, str]:
    """(recipient, sender) named on an envelope, for routing; not authenticated until opened."""
    recipient, sender, _, _, _ = _parse(envelope)
    return recipient, sender


def _parse(envelope: bytes) -> tuple[str, str, bytes, bytes, bytes]:
    try:
        fields = msgpack.unpackb(envelope, raw=False)
    except Exception:  # msgpack raises several unrelated types on garbage
        raise InvalidMessage("undecodable envelope") from None
    if (
        not isinstance(fields, list)
        or len(fields) != 5
        or not all(isinstance(f, str) for f in fields[:2])
        or not all(isinstance(f, bytes) for f in fields[2:])
        or len(fields[2]) != PUBLIC_KEY_BYTES
        or len(fields[4]) != SIGNATURE_BYTES
    ):
        raise InvalidMessage("malformed envelope")
    if msgpack.packb(fields, use_bin_type=True) != envelope:
        raise InvalidMessage("envelope is not canonically encoded")
    return fields[0], fields[1], fields[2], fields[3], fields[4]


def open_envelope(
    envelope: bytes, keys: KeyPair, *, session: bytes, round: int, recipient: str,
    sender_keys: Callable[[str], bytes],
) -> tuple[str, bytes]:
    """(sender, canonical bytes) of an envelope sealed to ``keys`` and signed by its sender's key.

    ``sender_keys(sender)`` is the verification key the aggregation lists
    for the named sender (``InvalidMessage`` for a sender it does not list);
    a bad signature or seal is ``InvalidMessage`` too.
    """
    named_recipient, sender, ephemeral_public, sealed, signature = _parse(envelope)
    if named_recipient != recipient:
        raise InvalidMessage(f"envelope is addressed to {named_recipient!r}, not {recipient!r}")
    verify_signature(sender_keys(sender), signature,
                     _signed_fields(session, round, sender, recipient, ephemeral_public, sealed))
    key = agree(keys, ephemeral_public, label=_SEAL_LABEL, session=session, round=round, parties=(sender, recipient))
    return sender, aead.open_sealed(key, sealed, associated=_associated(session, round, sender, recipient))


def helper_fingerprint(party: str, transport_key: bytes, parameters: bytes) -> str:
    """32 hex digits naming what a helper published: SHA-256(context(label, party, key, parameters))[:16].

    A helper's operator reads it from the helper's log and gives it to the
    client operators, who pin it (node config ``securefl-pins``).
    """
    digest = hashlib.sha256(context(_FINGERPRINT_LABEL, party, transport_key, parameters)).digest()
    return digest[:16].hex()


def client_fingerprint(verification_key: bytes) -> str:
    """32 hex digits naming a client's Ed25519 verification key: SHA-256(context(label, key))[:16].

    A client SuperNode logs it at discovery (SecAgg ``malicious_server=True``);
    the other client operators pin it (``securefl-pins = "client/<name>=<hex>"``).
    """
    digest = hashlib.sha256(context(_CLIENT_FINGERPRINT_LABEL, verification_key)).digest()
    return digest[:16].hex()


def _value_bytes(value: object) -> bytes:
    """A record value, typed: msgpack keeps int, float (as float64), str, bytes, bool and lists apart."""
    return msgpack.packb(value, use_bin_type=True, use_single_float=False)


def content_digest(content: RecordDict, *, skip: Iterable[str] = (), arrays_only: bool = False) -> bytes:
    """SHA-256 of ``content``'s records (but those named in ``skip``; only its arrays if ``arrays_only``), canonically.

    Records in name order, each with its kind; an ``ArrayRecord``'s arrays
    in their own order (the order is part of the model's layout) with dtype,
    shape and bytes; a ``ConfigRecord``'s or ``MetricRecord``'s values in key
    order with their types. Two contents digest alike exactly when a node
    would train alike on them.
    """
    skipped = set(skip)
    digest = hashlib.sha256(context(_CONTENT_LABEL))
    for name in sorted(content):
        if name in skipped:
            continue
        record = content[name]
        if isinstance(record, ArrayRecord):
            digest.update(context("arrays", name, len(record)))
            for key, array in record.items():
                data = memoryview(array.data)  # hashed in place: a model is not copied to be digested
                digest.update(context(key, array.dtype, _value_bytes(list(array.shape)), array.stype, data.nbytes))
                digest.update(data)
        elif arrays_only:
            continue
        elif isinstance(record, (ConfigRecord, MetricRecord)):
            kind = "config" if isinstance(record, ConfigRecord) else "metrics"
            digest.update(context(kind, name, len(record)))
            for key in sorted(record):
                digest.update(context(key, _value_bytes(record[key])))
        else:  # pragma: no cover - Flower has no other record kind
            raise InvalidMessage(f"record {name!r} is a {type(record).__name__}")
    return digest.digest()


def content_digests(contents: Iterable[RecordDict], *, skip: Iterable[str] = ()) -> set[bytes]:
    """The distinct :func:`content_digest` of ``contents``, each set of shared records digested once.

    A strategy sends one model to many nodes: the messages differ, their
    records are the same objects, so the model is hashed once, not per node.
    """
    skipped = set(skip)
    contents = list(contents)  # alive for the whole call: the records' ids stay theirs
    digests: dict[tuple[tuple[str, int], ...], bytes] = {}
    for content in contents:
        shared = tuple((name, id(content[name])) for name in sorted(content) if name not in skipped)
        if shared not in digests:
            digests[shared] = content_digest(content, skip=skipped)
    return set(digests.values())


def empty_digest() -> bytes:
    """:func:`content_digest` of no records: an aggregation whose clients were sent no model."""
    return content_digest(RecordDict())


def bound_session(session: bytes, digest: bytes) -> bytes:
    """The session the engines run under: SHA-256(context(label, session, digest))[:16] (see module docstring)."""
    if len(digest) != DIGEST_BYTES:
        raise InvalidMessage(f"a round digest has {DIGEST_BYTES} bytes; found {len(digest)}")
    return hashlib.sha256(context(_BOUND_SESSION_LABEL, session, digest)).digest()[: len(session)]
