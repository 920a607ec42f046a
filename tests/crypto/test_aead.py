"""securefl.crypto.aead: round trip, layout, and every tampering fails uniformly."""

import os

import pytest
from cryptography.hazmat.primitives.ciphers.aead import AESGCM
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.crypto import aead
from securefl.crypto.aead import associated_data, open_sealed, seal
from securefl.crypto.keys import context
from securefl.errors import ConfigurationError, InvalidMessage

KEY = bytes(range(32))
AD_FIELDS = dict(session=b"session-1", round=2, sender="client-a", recipient="client-b", label="secagg/share")
AD = associated_data(**AD_FIELDS)
FAILED = "ciphertext failed authentication"


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 0x80]) + data[index + 1 :]


@settings(max_examples=50, deadline=None)
@given(plaintext=st.binary(max_size=300), associated=st.binary(max_size=50))
def test_round_trip(plaintext, associated):
    sealed = seal(KEY, plaintext, associated=associated)

    assert len(sealed) == len(plaintext) + aead.OVERHEAD_BYTES
    assert open_sealed(KEY, sealed, associated=associated) == plaintext


def test_layout_is_nonce_then_ciphertext_and_tag():
    nonce = bytes(12)
    by_hand = nonce + AESGCM(KEY).encrypt(nonce, b"share bytes", AD)

    assert open_sealed(KEY, by_hand, associated=AD) == b"share bytes"


def test_fresh_nonce_every_seal():
    first, second = seal(KEY, b"m", associated=AD), seal(KEY, b"m", associated=AD)

    assert first[:12] != second[:12]
    assert first != second


def test_associated_data_layout():
    assert AD == context("securefl/aead/v1", "secagg/share", b"session-1", 2, "client-a", "client-b")


SEALED = seal(KEY, b"a secret share of 32 bytes......", associated=AD)


@pytest.mark.parametrize(
    "sealed",
    [
        pytest.param(flip(SEALED, 0), id="nonce first byte"),
        pytest.param(flip(SEALED, 11), id="nonce last byte"),
        pytest.param(flip(SEALED, 12), id="ciphertext first byte"),
        pytest.param(flip(SEALED, len(SEALED) - 17), id="ciphertext last byte"),
        pytest.param(flip(SEALED, len(SEALED) - 16), id="tag first byte"),
        pytest.param(flip(SEALED, len(SEALED) - 1), id="tag last byte"),
        pytest.param(SEALED[:-1], id="truncated tag"),
        pytest.param(SEALED + b"\x00", id="extra byte"),
        pytest.param(SEALED[:27], id="shorter than nonce and tag"),
        pytest.param(b"", id="empty"),
        pytest.param(SEALED[12:], id="nonce stripped"),
    ],
)
def test_tampering_fails_authentication(sealed):
    with pytest.raises(InvalidMessage) as raised:
        open_sealed(KEY, sealed, associated=AD)

    assert str(raised.value) == FAILED


@pytest.mark.parametrize(
    "change",
    [
        {"session": b"session-2"},
        {"round": 3},
        {"sender": "client-c"},
        {"recipient": "client-c"},
        {"sender": "client-b", "recipient": "client-a"},
        {"label": "secagg/other"},
    ],
)
def test_wrong_associated_data_fails(change):
    with pytest.raises(InvalidMessage, match=FAILED):
        open_sealed(KEY, SEALED, associated=associated_data(**{**AD_FIELDS, **change}))


def test_wrong_key_fails():
    with pytest.raises(InvalidMessage, match=FAILED):
        open_sealed(os.urandom(32), SEALED, associated=AD)


@pytest.mark.parametrize("length", [0, 16, 31, 33])
def test_key_of_wrong_length_refused(length):
    with pytest.raises(ConfigurationError, match=f"found {length} bytes"):
        seal(bytes(length), b"m", associated=AD)
    with pytest.raises(ConfigurationError, match=f"found {length} bytes"):
        open_sealed(bytes(length), SEALED, associated=AD)


def test_bad_argument_types_refused():
    with pytest.raises(ConfigurationError, match="found str"):
        seal("k" * 32, b"m", associated=AD)
    with pytest.raises(ConfigurationError, match="plaintext must be bytes"):
        seal(KEY, "m", associated=AD)
    with pytest.raises(ConfigurationError, match="associated data must be bytes"):
        seal(KEY, b"m", associated="ad")
    with pytest.raises(InvalidMessage, match=FAILED):
        open_sealed(KEY, "not bytes", associated=AD)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"session": "s"}, "session must be bytes"),
        ({"round": -1}, "found -1"),
        ({"round": False}, "found False"),
        ({"sender": ""}, "sender must be"),
        ({"recipient": 7}, "recipient must be"),
        ({"label": ""}, "label must be"),
    ],
)
def test_associated_data_validates_fields(change, message):
    with pytest.raises(ConfigurationError, match=message):
        associated_data(**{**AD_FIELDS, **change})
