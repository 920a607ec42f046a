"""securefl.crypto.keys: context encoding, HKDF, X25519 agreement, Ed25519."""

import pytest
from cryptography.hazmat.primitives import hashes
from cryptography.hazmat.primitives.kdf.hkdf import HKDF
from hypothesis import given, settings
from hypothesis import strategies as st

from securefl.crypto import keys
from securefl.crypto.keys import KeyPair, SigningKey, agree, context, hkdf, verify_signature
from securefl.errors import ConfigurationError, InvalidMessage

# RFC 7748 section 6.1
ALICE_PRIVATE = bytes.fromhex("77076d0a7318a57d3c16c17251b26645df4c2f87ebc0992ab177fba51db92c2a")
ALICE_PUBLIC = bytes.fromhex("8520f0098930a754748b7ddcb43ef75a0dbf3a0d26381af4eba4a98eaa9b4e6a")
BOB_PRIVATE = bytes.fromhex("5dab087e624a8a4b79e17f8b83800ee66f3bb1292618b6fd1c2f8b27ff88e0eb")
BOB_PUBLIC = bytes.fromhex("de9edb7d7b7dc1b4d35b61c2ece435373f8343c85b78674dadfc7e146f882b4f")
SHARED = bytes.fromhex("4a5d9d5ba4ce2de1728e3bf480350f25e07e21c947d19e3376f09b3c1e161742")
# Low-order and degenerate u-coordinates (RFC 7748 section 6.1; libsodium's blocklist)
LOW_ORDER_POINTS = [
    "00" * 32,
    "01" + "00" * 31,
    "e0eb7a7c3b41b8ae1656e3faf19fc46ada098deb9c32b1fd866205165f49b800",
    "5f9c95bca3508c24b1d0b1559c83ef5b04445cc4581c8e86d8224eddd09f1157",
    "ec" + "ff" * 30 + "7f",
    "ed" + "ff" * 30 + "7f",
    "ee" + "ff" * 30 + "7f",
]
AGREE_ARGS = dict(label="secagg/pairwise", session=b"session-1", round=3, parties=("client-a", "client-b"))

field = st.one_of(st.binary(max_size=8), st.text(max_size=8), st.integers(0, 2**64 - 1))


# --- context -------------------------------------------------------------------


def test_context_layout_known_answer():
    encoded = context("ab", b"\x01", 7)

    assert encoded == bytes.fromhex(
        "0003" "02" "00000002" "6162" "01" "00000001" "01" "03" "00000008" "0000000000000007"
    )


@settings(max_examples=150, deadline=None)
@given(first=st.lists(field, max_size=4), second=st.lists(field, max_size=4))
def test_context_is_injective(first, second):
    def typed(fields):
        return [(type(f), f) for f in fields]

    if typed(first) != typed(second):
        assert context(*first) != context(*second)


@pytest.mark.parametrize(
    "left, right",
    [(("ab", "c"), ("a", "bc")), (("1",), (b"1",)), ((1,), ("1",)), ((), ("",)), ((b"",), ("",)), (("a",), ("a", ""))],
)
def test_context_separates_lookalikes(left, right):
    assert context(*left) != context(*right)


@pytest.mark.parametrize(
    "bad, message",
    [
        (True, "is a bool"),
        (-1, "found -1"),
        (2**64, f"found {2**64}"),
        (1.0, "found float"),
        (None, "found NoneType"),
        ("\ud800", "not encodable"),
    ],
)
def test_context_rejects_bad_fields(bad, message):
    with pytest.raises(ConfigurationError, match=message):
        context("ok", bad)


# --- HKDF ----------------------------------------------------------------------


def test_hkdf_rfc5869_case_3():
    okm = hkdf(b"\x0b" * 22, info=b"", length=42)

    assert okm.hex() == "8da4e775a563c18f715f802a063c5a31b8a11f5c5ee1879ec3454e5f3c738d2d9d201395faa4b61a96c8"


def test_hkdf_rfc5869_case_1_shape_without_salt():
    """RFC 5869 test case 1's input keying material and info, unsalted, against cryptography's HKDF."""
    ikm, info = b"\x0b" * 22, bytes(range(0xF0, 0xFA))
    expected = HKDF(algorithm=hashes.SHA256(), length=42, salt=None, info=info).derive(ikm)

    assert hkdf(ikm, info=info, length=42) == expected


@settings(max_examples=60, deadline=None)
@given(secret=st.binary(min_size=1, max_size=100), info=st.binary(max_size=300),
       length=st.integers(min_value=1, max_value=300))
def test_hkdf_and_derive32_equal_cryptography_hkdf(secret, info, length):
    def reference(size):
        return HKDF(algorithm=hashes.SHA256(), length=size, salt=None, info=info).derive(secret)

    assert hkdf(secret, info=info, length=length) == reference(length)
    assert keys.derive32(secret, info) == reference(32)


def test_hkdf_longest_output():
    info = context("longest")
    assert hkdf(b"k" * 32, info=info, length=8160) == HKDF(
        algorithm=hashes.SHA256(), length=8160, salt=None, info=info).derive(b"k" * 32)


def test_hkdf_info_separates():
    assert hkdf(b"k" * 32, info=context("a")) != hkdf(b"k" * 32, info=context("b"))


@pytest.mark.parametrize(
    "kwargs, message",
    [
        (dict(secret=b"", info=b"x"), "found 0 bytes"),
        (dict(secret="k", info=b"x"), "found str"),
        (dict(secret=b"k", info="x"), "info must be bytes"),
        (dict(secret=b"k", info=b"x", length=0), "found 0"),
        (dict(secret=b"k", info=b"x", length=8161), "found 8161"),
    ],
)
def test_hkdf_rejects_bad_arguments(kwargs, message):
    secret = kwargs.pop("secret")
    with pytest.raises(ConfigurationError, match=message):
        hkdf(secret, **kwargs)


# --- X25519 --------------------------------------------------------------------


def test_x25519_rfc7748_vector():
    alice = KeyPair.from_private_bytes(ALICE_PRIVATE)
    bob = KeyPair.from_private_bytes(BOB_PRIVATE)

    assert alice.public_bytes == ALICE_PUBLIC
    assert bob.public_bytes == BOB_PUBLIC
    assert alice.exchange(BOB_PUBLIC) == SHARED == bob.exchange(ALICE_PUBLIC)


def test_agree_known_answer_rederived_by_hand():
    """Pins the HKDF info layout documented in protocols/crypto.md."""
    def text(s):
        return b"\x02" + len(s).to_bytes(4, "big") + s.encode()

    def raw(b):
        return b"\x01" + len(b).to_bytes(4, "big") + b

    info = (
        (8).to_bytes(2, "big")
        + text("securefl/agree/v1")
        + text("secagg/pairwise")
        + raw(b"session-1")
        + b"\x03" + (8).to_bytes(4, "big") + (3).to_bytes(8, "big")
        + text("client-a")
        + text("client-b")
        + raw(min(ALICE_PUBLIC, BOB_PUBLIC))
        + raw(max(ALICE_PUBLIC, BOB_PUBLIC))
    )
    expected = HKDF(algorithm=hashes.SHA256(), length=32, salt=None, info=info).derive(SHARED)

    assert agree(KeyPair.from_private_bytes(ALICE_PRIVATE), BOB_PUBLIC, **AGREE_ARGS) == expected


def test_generated_keys_are_fresh_and_round_trip():
    first, second = KeyPair.generate(), KeyPair.generate()

    assert first.public_bytes != second.public_bytes
    assert len(first.public_bytes) == len(first.private_bytes) == 32
    assert KeyPair.from_private_bytes(first.private_bytes) == first


def test_agree_is_symmetric_in_who_computes_and_party_order():
    alice, bob = KeyPair.generate(), KeyPair.generate()

    from_alice = agree(alice, bob.public_bytes, **AGREE_ARGS)
    from_bob = agree(bob, alice.public_bytes, **{**AGREE_ARGS, "parties": ("client-b", "client-a")})

    assert from_alice == from_bob
    assert len(from_alice) == 32


@pytest.mark.parametrize(
    "change",
    [
        {"label": "secagg/other"},
        {"session": b"session-2"},
        {"session": b""},
        {"round": 4},
        {"parties": ("client-a", "client-c")},
        {"parties": ("client-ab", "client-")},
    ],
)
def test_agree_binds_label_session_round_and_parties(change):
    alice, bob = KeyPair.generate(), KeyPair.generate()

    assert agree(alice, bob.public_bytes, **AGREE_ARGS) != agree(alice, bob.public_bytes, **{**AGREE_ARGS, **change})


def test_agree_output_length_and_key_pair_binding():
    alice, bob, carol = KeyPair.generate(), KeyPair.generate(), KeyPair.generate()

    long_key = agree(alice, bob.public_bytes, **AGREE_ARGS, length=64)

    assert len(long_key) == 64
    assert long_key[:32] != agree(alice, carol.public_bytes, **AGREE_ARGS)


@pytest.mark.parametrize("length", [0, 31, 33, 64])
def test_agree_rejects_peer_key_of_wrong_length(length):
    with pytest.raises(InvalidMessage, match=f"found {length} bytes"):
        agree(KeyPair.generate(), bytes(length), **AGREE_ARGS)


def test_agree_rejects_non_bytes_peer_key():
    with pytest.raises(InvalidMessage, match="found str"):
        agree(KeyPair.generate(), "a" * 32, **AGREE_ARGS)


@pytest.mark.parametrize("point", LOW_ORDER_POINTS)
def test_agree_rejects_low_order_points(point):
    with pytest.raises(InvalidMessage, match="low-order"):
        agree(KeyPair.generate(), bytes.fromhex(point), **AGREE_ARGS)


@pytest.mark.parametrize(
    "change, message",
    [
        ({"parties": ("client-a", "client-a")}, "must differ"),
        ({"parties": ("client-a",)}, "tuple of two"),
        ({"parties": ["client-a", "client-b"]}, "tuple of two"),
        ({"parties": ("client-a", "")}, "party id 1"),
        ({"round": -1}, "found -1"),
        ({"round": True}, "found True"),
        ({"label": ""}, "label must be"),
        ({"session": "s"}, "session must be bytes"),
        ({"length": 0}, "found 0"),
    ],
)
def test_agree_rejects_bad_configuration(change, message):
    with pytest.raises(ConfigurationError, match=message):
        agree(KeyPair.generate(), KeyPair.generate().public_bytes, **{**AGREE_ARGS, **change})


@pytest.mark.parametrize("length", [31, 33])
def test_private_key_of_wrong_length_refused(length):
    with pytest.raises(ConfigurationError, match=f"found {length} bytes"):
        KeyPair.from_private_bytes(bytes(length))
    with pytest.raises(ConfigurationError, match=f"found {length} bytes"):
        SigningKey.from_private_bytes(bytes(length))


def test_keys_are_immutable_and_repr_hides_private_key():
    pair, signer = KeyPair.generate(), SigningKey.generate()

    with pytest.raises(AttributeError):
        pair._private = None
    assert pair.private_bytes.hex() not in repr(pair)
    assert signer.private_bytes.hex() not in repr(signer)
    assert pair.public_bytes.hex() in repr(pair)


def test_wrapper_constructors_check_types():
    with pytest.raises(ConfigurationError, match="KeyPair.generate"):
        KeyPair(b"\x00" * 32)
    with pytest.raises(ConfigurationError, match="SigningKey.generate"):
        SigningKey(b"\x00" * 32)
    with pytest.raises(ConfigurationError, match="private must be a KeyPair"):
        agree(SigningKey.generate(), KeyPair.generate().public_bytes, **AGREE_ARGS)


# --- Ed25519 -------------------------------------------------------------------

# RFC 8032 section 7.1, test 1
ED_PRIVATE = bytes.fromhex("9d61b19deffd5a60ba844af492ec2cc44449c5697b326919703bac031cae7f60")
ED_PUBLIC = bytes.fromhex("d75a980182b10ab7d54bfed3c964073a0ee172f3daa62325af021a68f707511a")
ED_SIGNATURE = bytes.fromhex(
    "e5564300c360ac729086e2cc806e828a84877f1eb8e5d974d873e065224901555fb8821590a33bacc61e39701cf9b46bd25bf5f0595bbe24655141438e7a100b"
)


def test_ed25519_rfc8032_vector():
    signer = SigningKey.from_private_bytes(ED_PRIVATE)

    assert signer.public_bytes == ED_PUBLIC
    assert signer.sign(b"") == ED_SIGNATURE
    verify_signature(ED_PUBLIC, ED_SIGNATURE, b"")


def test_sign_and_verify_round_trip():
    signer = SigningKey.generate()

    signature = signer.sign(b"round 3 public keys")

    assert len(signature) == keys.SIGNATURE_BYTES
    verify_signature(signer.public_bytes, signature, b"round 3 public keys")


def flip(data: bytes, index: int) -> bytes:
    return data[:index] + bytes([data[index] ^ 1]) + data[index + 1 :]


@pytest.mark.parametrize(
    "public, signature, data",
    [
        (ED_PUBLIC, ED_SIGNATURE, b"x"),
        (ED_PUBLIC, flip(ED_SIGNATURE, 0), b""),
        (ED_PUBLIC, flip(ED_SIGNATURE, 63), b""),
        (flip(ED_PUBLIC, 5), ED_SIGNATURE, b""),
        (ED_PUBLIC[:31], ED_SIGNATURE, b""),
        (ED_PUBLIC + b"\x00", ED_SIGNATURE, b""),
        (ED_PUBLIC, ED_SIGNATURE[:63], b""),
        (ED_PUBLIC, ED_SIGNATURE + b"\x00", b""),
        (bytes(32), bytes(64), b""),
        (b"\xff" * 32, ED_SIGNATURE, b""),
        ("not bytes", ED_SIGNATURE, b""),
        (ED_PUBLIC, ED_SIGNATURE, "not bytes"),
    ],
)
def test_verify_failures_raise_one_uniform_error(public, signature, data):
    with pytest.raises(InvalidMessage) as raised:
        verify_signature(public, signature, data)

    assert str(raised.value) == "signature verification failed"


def test_sign_rejects_non_bytes():
    with pytest.raises(ConfigurationError, match="found str"):
        SigningKey.generate().sign("text")
