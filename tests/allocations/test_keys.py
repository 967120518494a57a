"""SSH public keys: only sound keys are accepted, with a message saying what is wrong."""

import base64
import struct
import subprocess

import pytest
from django.utils import translation

from allocations.keys import InvalidKey, parse_public_key
from allocations.models import SshKey


@pytest.fixture(autouse=True)
def english():
    with translation.override("en"):
        yield


def generated(tmp_path, *args) -> str:
    path = tmp_path / "k"
    subprocess.run(["ssh-keygen", "-q", "-N", "", "-C", "kim@laptop", "-f", str(path), *args], check=True)
    return path.with_suffix(".pub").read_text().strip()


@pytest.mark.parametrize(
    ("args", "bits"),
    [(["-t", "ed25519"], 256), (["-t", "ecdsa", "-b", "384"], 384), (["-t", "rsa", "-b", "3072"], 3072)],
)
def test_sound_keys_are_accepted_with_openssh_fingerprints(tmp_path, args, bits):
    line = generated(tmp_path, *args)
    key = parse_public_key(line)
    assert key.bits == bits
    expected = subprocess.run(
        ["ssh-keygen", "-lf", str(tmp_path / "k.pub")], capture_output=True, text=True
    ).stdout.split()[1]
    assert key.fingerprint == expected
    assert key.line == line


def test_short_rsa_keys_are_refused(tmp_path):
    with pytest.raises(InvalidKey, match="at least 3072 bits"):
        parse_public_key(generated(tmp_path, "-t", "rsa", "-b", "2048"))


def test_private_keys_are_refused_with_a_warning(tmp_path):
    generated(tmp_path, "-t", "ed25519")
    with pytest.raises(InvalidKey, match="private key"):
        parse_public_key((tmp_path / "k").read_text())


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ('command="rm -rf /" ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE', "options"),
        ("ssh-ed25519 AAAA\nssh-ed25519 BBBB", "one line"),
        ("ssh-dss AAAAB3NzaC1kc3MAAACBAP", "Unsupported key type"),
        ("ssh-ed25519 not-base64!!", "base64"),
        ("ssh-ed25519", "missing"),
        ("", "Paste a public key"),
    ],
)
def test_malformed_entries_say_what_is_wrong(text, message):
    with pytest.raises(InvalidKey, match=message):
        parse_public_key(text)


def test_a_blob_of_another_type_is_refused():
    blob = struct.pack(">I", 7) + b"ssh-rsa" + struct.pack(">I", 32) + b"x" * 32
    with pytest.raises(InvalidKey, match="does not match"):
        parse_public_key("ssh-ed25519 " + base64.b64encode(blob).decode())


def test_comments_cannot_smuggle_anything(tmp_path):
    line = generated(tmp_path, "-t", "ed25519")
    key = parse_public_key(" ".join(line.split()[:2]) + ' evil";\x00rm -rf')
    assert key.comment == "evilrm-rf"


def test_the_keys_page_adds_lists_and_removes_keys(user_client, user, tmp_path):
    line = generated(tmp_path, "-t", "ed25519")
    response = user_client.post("/keys/", {"name": "laptop", "public_key": line})
    assert response.status_code == 302
    key = SshKey.objects.get(user=user)
    page = user_client.get("/keys/").content.decode()
    assert key.fingerprint in page
    duplicate = user_client.post("/keys/", {"public_key": line}, HTTP_ACCEPT_LANGUAGE="en")
    assert duplicate.status_code == 400
    assert "already added this key" in duplicate.content.decode()
    user_client.post(f"/keys/{key.pk}/delete/")
    assert not SshKey.objects.exists()


def test_a_bad_key_keeps_what_was_typed(user_client, tmp_path):
    response = user_client.post("/keys/", {"name": "work", "public_key": "ssh-rsa AAAA"}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    body = response.content.decode()
    assert 'value="work"' in body
    assert "ssh-rsa AAAA" in body


def test_someone_elses_key_cannot_be_removed(client, user, tmp_path):
    from tests.factories import UserFactory

    key = SshKey.objects.create(user=user, key_type="ssh-ed25519", public_key="x", fingerprint="SHA256:x", bits=256)
    client.force_login(UserFactory())
    assert client.post(f"/keys/{key.pk}/delete/").status_code == 404
    assert SshKey.objects.filter(pk=key.pk).exists()


def _ssh_string(data: bytes) -> bytes:
    return struct.pack(">I", len(data)) + data


def _mpint(n: int) -> bytes:
    raw = n.to_bytes((n.bit_length() + 8) // 8, "big")
    return _ssh_string(raw)


def test_an_ecdsa_key_whose_point_is_not_on_the_curve_is_refused():
    # A well-formed nistp256 blob whose (x, y) is not a point of the curve.
    point = b"\x04" + (1).to_bytes(32, "big") + (1).to_bytes(32, "big")
    blob = _ssh_string(b"ecdsa-sha2-nistp256") + _ssh_string(b"nistp256") + _ssh_string(point)
    with pytest.raises(InvalidKey, match="not a valid ECDSA key"):
        parse_public_key("ecdsa-sha2-nistp256 " + base64.b64encode(blob).decode())


@pytest.mark.parametrize("exponent", [1, 3, 65536])
def test_rsa_keys_with_a_weak_or_even_exponent_are_refused(tmp_path, exponent):
    from cryptography.hazmat.primitives import serialization

    sound = serialization.load_ssh_public_key(generated(tmp_path, "-t", "rsa", "-b", "3072").encode())
    modulus = sound.public_numbers().n
    blob = _ssh_string(b"ssh-rsa") + _mpint(exponent) + _mpint(modulus)
    with pytest.raises(InvalidKey, match="exponent"):
        parse_public_key("ssh-rsa " + base64.b64encode(blob).decode())


def test_the_same_key_cannot_be_added_by_a_second_user(client, user, tmp_path):
    from tests.factories import UserFactory

    line = generated(tmp_path, "-t", "ed25519")
    client.force_login(user)
    assert client.post("/keys/", {"public_key": line}).status_code == 302
    other = UserFactory()
    client.force_login(other)
    response = client.post("/keys/", {"public_key": line}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "belongs to another account" in response.content.decode()
    assert not SshKey.objects.filter(user=other).exists()


def test_the_same_rsa_key_re_encoded_with_redundant_zero_bytes_is_refused_for_a_second_user(db):
    """OpenSSH strips redundant leading zeros from an mpint and accepts the key: the portal must
    see one key, one fingerprint, and store the line as ssh-keygen writes it."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import rsa

    from allocations.services.keys import sshkey_add
    from portal.errors import PortalError
    from tests.factories import UserFactory

    key = rsa.generate_private_key(65537, 3072).public_key()
    canonical = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()
    n = key.public_numbers().n
    padded = b"\x00" + n.to_bytes((n.bit_length() + 7) // 8, "big")
    blob = _ssh_string(b"ssh-rsa") + _ssh_string(b"\x00\x01\x00\x01") + _ssh_string(b"\x00" + padded)
    re_encoded = "ssh-rsa " + base64.b64encode(blob).decode()
    assert parse_public_key(re_encoded).line == canonical
    sshkey_add(user=UserFactory(), text=re_encoded)
    assert SshKey.objects.get().public_key == canonical
    with pytest.raises(PortalError):
        sshkey_add(user=UserFactory(), text=canonical)
    assert SshKey.objects.count() == 1


SMALL_ORDER_ED25519 = {
    "identity": b"\x01" + b"\x00" * 31,
    "identity-non-canonical": b"\xee" + b"\xff" * 30 + b"\x7f",
    "identity-sign-bit": b"\x01" + b"\x00" * 30 + b"\x80",
    "order-2": b"\xec" + b"\xff" * 30 + b"\x7f",
    "order-4": b"\x00" * 32,
    "order-4-non-canonical": b"\xed" + b"\xff" * 30 + b"\x7f",
    "order-8": bytes.fromhex("26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05"),
    "order-8-negated": bytes.fromhex("c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a"),
}


@pytest.mark.parametrize("point", SMALL_ORDER_ED25519.values(), ids=SMALL_ORDER_ED25519.keys())
def test_an_ed25519_key_of_small_order_is_refused(point):
    """With the identity as public key, OpenSSH's cofactorless check accepts R = [S]B for any
    message: anyone could log in to the account (see the sshd test below)."""
    blob = _ssh_string(b"ssh-ed25519") + _ssh_string(point)
    with pytest.raises(InvalidKey, match="not a valid ed25519 key"):
        parse_public_key("ssh-ed25519 " + base64.b64encode(blob).decode())


def test_a_compressed_ecdsa_point_is_a_form_error_not_a_500(client, user):
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ec

    key = ec.generate_private_key(ec.SECP256R1()).public_key()
    point = key.public_bytes(serialization.Encoding.X962, serialization.PublicFormat.CompressedPoint)
    blob = _ssh_string(b"ecdsa-sha2-nistp256") + _ssh_string(b"nistp256") + _ssh_string(point)
    client.force_login(user)
    text = "ecdsa-sha2-nistp256 " + base64.b64encode(blob).decode()
    response = client.post("/keys/", {"name": "laptop", "public_key": text}, HTTP_ACCEPT_LANGUAGE="en")
    assert response.status_code == 400
    assert "not a valid ECDSA key" in response.content.decode()
    assert not SshKey.objects.exists()


@pytest.mark.parametrize(
    ("modulus", "message"),
    [
        ((1 << 20000) + 1, "at most 16384 bits"),  # OpenSSH refuses it: the key would never work
        ((1 << 4000) * 3 + 1, "not a valid RSA key"),  # a multiple of small primes
        (1 << 4000, "not a valid RSA key"),  # even
    ],
    ids=["too-large", "small-factors", "even"],
)
def test_rsa_keys_too_large_for_openssh_or_with_a_garbage_modulus_are_refused(modulus, message):
    blob = _ssh_string(b"ssh-rsa") + _mpint(65537) + _mpint(modulus)
    with pytest.raises(InvalidKey, match=message):
        parse_public_key("ssh-rsa " + base64.b64encode(blob).decode())


def test_a_member_cannot_remove_another_users_key(client, db):
    from tests.factories import UserFactory

    victim = UserFactory()
    key = SshKey.objects.create(
        user=victim, key_type="ssh-ed25519", public_key="ssh-ed25519 AAAA", fingerprint="SHA256:x", bits=256
    )
    client.force_login(UserFactory())
    assert client.post(f"/keys/{key.pk}/delete/").status_code == 404
    assert SshKey.objects.filter(pk=key.pk).exists()


def _forged_identity_login(node, username: str) -> bool:
    """Sign in as `username` with the ed25519 identity point as "public key" and the forged
    signature R = B, S = 1, which OpenSSH's cofactorless check accepts for any session."""
    import paramiko
    from paramiko.message import Message

    identity = b"\x01" + b"\x00" * 31
    signature = bytes.fromhex("58" + "66" * 31) + (1).to_bytes(32, "little")

    class Forged(paramiko.Ed25519Key):
        def __init__(self) -> None:
            self.public_blob = None
            self._signing_key = None
            self._verifying_key = None

        def get_name(self) -> str:
            return "ssh-ed25519"

        def asbytes(self) -> bytes:
            return _ssh_string(b"ssh-ed25519") + _ssh_string(identity)

        def can_sign(self) -> bool:
            return True

        def sign_ssh_data(self, data, algorithm=None) -> Message:
            message = Message()
            message.add_string("ssh-ed25519")
            message.add_string(signature)
            return message

    transport = paramiko.Transport((node.address, node.ssh_port))
    try:
        transport.start_client(timeout=10)
        assert transport.get_remote_server_key().get_base64() == node.host_key.split()[1]  # pinned
        try:
            transport.auth_publickey(username, Forged())
        except paramiko.AuthenticationException:
            return False
        return transport.is_authenticated()
    finally:
        transport.close()


def test_the_ed25519_identity_key_never_reaches_a_node_where_anyone_could_sign_in_with_it(client, gpu_node, tmp_path):
    """Attack review of issue 8: the portal accepted the identity point as a key, put it in the
    account's authorized keys, and a forged signature then opened the account (real sshd)."""
    from django.utils import timezone

    from allocations.models import NodeAccount
    from tests.allocations.helpers import approved_grant, provision, ssh_as, user_with_key

    app, key = user_with_key(tmp_path)
    pi = app.principal_investigator
    identity_line = (
        "ssh-ed25519 "
        + base64.b64encode(_ssh_string(b"ssh-ed25519") + _ssh_string(SMALL_ORDER_ED25519["identity"])).decode()
    )
    client.force_login(pi)
    assert client.post("/keys/", {"name": "forged", "public_key": identity_line}).status_code == 400
    today = timezone.localdate()
    provision(approved_grant(app, starts_on=today, ends_on=today + timezone.timedelta(days=30)))
    account = NodeAccount.objects.get(user=pi)
    assert ssh_as(gpu_node, account.username, key, "id -un")[1].strip() == account.username
    assert not _forged_identity_login(gpu_node, account.username)
