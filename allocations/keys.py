"""SSH public key validation: pure functions, no network.

Only one bare key per entry: ed25519, ecdsa (nistp256/384/521) or rsa of at least 3072 bits,
loaded by the `cryptography` package (a point off its curve or a weak exponent is refused).
Options (`command=…`), several lines, private keys and malformed data are refused with a
message the user can act on. The stored line is rebuilt from the parsed parts, so nothing the
user typed beyond type, key and a tame comment ever reaches a node.
"""

from __future__ import annotations

import base64
import binascii
import hashlib
import re
import struct
from dataclasses import dataclass

from cryptography.exceptions import UnsupportedAlgorithm
from cryptography.hazmat.primitives import serialization
from django.utils.translation import gettext_lazy as _

MIN_RSA_BITS = 3072
MAX_RSA_BITS = 16384  # OpenSSH's SSH_RSA_MAXIMUM_MODULUS_SIZE: a larger key never works
ED25519_P = 2**255 - 19
# The y-coordinates (mod p) of the eight ed25519 points of small order: the identity (1), the
# point of order 2 (p-1), those of order 4 (0) and of order 8 (Y8, p-Y8). With such a "public
# key" OpenSSH's cofactorless check accepts a forged signature from anyone.
_ED25519_Y8 = 2707385501144840649318225287225658788936804267575313519463743609750303402022
ED25519_SMALL_ORDER_Y = frozenset({0, 1, ED25519_P - 1, _ED25519_Y8, ED25519_P - _ED25519_Y8})
_SMALL_PRIMES = [n for n in range(3, 2000, 2) if all(n % d for d in range(3, int(n**0.5) + 1, 2))]
MIN_RSA_EXPONENT = 65537  # ssh-keygen's since 2013; smaller or even exponents are refused
ECDSA_CURVES = {
    "ecdsa-sha2-nistp256": b"nistp256",
    "ecdsa-sha2-nistp384": b"nistp384",
    "ecdsa-sha2-nistp521": b"nistp521",
}
ALLOWED_TYPES = {"ssh-ed25519", "ssh-rsa", *ECDSA_CURVES}
COMMENT_RE = re.compile(r"^[A-Za-z0-9@._+\-]{0,100}$")


class InvalidKey(ValueError):
    """A key was refused; str() is the user-facing reason."""


@dataclass(frozen=True)
class PublicKey:
    key_type: str
    blob: bytes
    comment: str
    bits: int

    @property
    def fingerprint(self) -> str:
        """OpenSSH's SHA256 fingerprint: base64 of the blob's SHA-256, unpadded."""
        digest = hashlib.sha256(self.blob).digest()
        return "SHA256:" + base64.b64encode(digest).decode().rstrip("=")

    @property
    def line(self) -> str:
        encoded = base64.b64encode(self.blob).decode()
        return f"{self.key_type} {encoded}" + (f" {self.comment}" if self.comment else "")


def _read_string(data: bytes, offset: int) -> tuple[bytes, int]:
    if offset + 4 > len(data):
        raise InvalidKey(_("The key data is truncated."))
    (length,) = struct.unpack(">I", data[offset : offset + 4])
    end = offset + 4 + length
    if end > len(data):
        raise InvalidKey(_("The key data is truncated."))
    return data[offset + 4 : end], end


def parse_public_key(text: str) -> PublicKey:
    text = (text or "").strip()
    if not text:
        raise InvalidKey(_("Paste a public key."))
    if "PRIVATE KEY" in text:
        raise InvalidKey(_("This is a private key. Never share it: paste the public key (the .pub file) instead."))
    if "\n" in text or "\r" in text:
        raise InvalidKey(_("Paste exactly one key on one line."))
    parts = text.split()
    if parts[0] not in ALLOWED_TYPES:
        if any(p in ALLOWED_TYPES for p in parts[1:]):
            raise InvalidKey(_("Key options (such as command= or from=) are not allowed. Paste the bare key."))
        raise InvalidKey(
            _("Unsupported key type “%(type)s”. Use ed25519, ecdsa or rsa (3072 bits or more).")
            % {"type": parts[0][:40]}
        )
    if len(parts) < 2:
        raise InvalidKey(_("The key data is missing after the key type."))
    key_type = parts[0]
    try:
        blob = base64.b64decode(parts[1], validate=True)
    except (binascii.Error, ValueError) as exc:
        raise InvalidKey(_("The key data is not valid base64.")) from exc
    comment = " ".join(parts[2:])
    if not COMMENT_RE.fullmatch(comment):
        comment = re.sub(r"[^A-Za-z0-9@._+\-]", "", comment)[:100]

    inner_type, offset = _read_string(blob, 0)
    if inner_type.decode(errors="replace") != key_type:
        raise InvalidKey(_("The key data does not match its type."))
    if key_type == "ssh-ed25519":
        key, offset = _read_string(blob, offset)
        if len(key) != 32 or _ed25519_small_order(key):
            raise InvalidKey(_("The key data is not a valid ed25519 key."))
        bits = 256
    elif key_type == "ssh-rsa":
        exponent, offset = _read_string(blob, offset)
        modulus, offset = _read_string(blob, offset)
        n = int.from_bytes(modulus, "big")
        bits = n.bit_length()
        if not exponent or bits < MIN_RSA_BITS:
            raise InvalidKey(
                _("RSA keys must have at least %(min)d bits; this one has %(bits)d. Use ed25519 instead.")
                % {"min": MIN_RSA_BITS, "bits": bits}
            )
        if bits > MAX_RSA_BITS:
            raise InvalidKey(
                _("RSA keys may have at most %(max)d bits; this one has %(bits)d. Use ed25519 instead.")
                % {"max": MAX_RSA_BITS, "bits": bits}
            )
        e = int.from_bytes(exponent, "big")
        if e < MIN_RSA_EXPONENT or e % 2 == 0:
            raise InvalidKey(_("The RSA key's public exponent is not usable (use 65537)."))
        if n % 2 == 0 or any(n % prime == 0 for prime in _SMALL_PRIMES):
            raise InvalidKey(_("The key data is not a valid RSA key."))
    else:
        curve, offset = _read_string(blob, offset)
        point, offset = _read_string(blob, offset)
        if curve != ECDSA_CURVES[key_type] or not point:
            raise InvalidKey(_("The key data is not a valid ECDSA key."))
        bits = int(key_type[-3:])
    if offset != len(blob):
        raise InvalidKey(_("The key data has trailing bytes."))
    canonical = _canonical_blob(key_type, blob)
    return PublicKey(key_type=key_type, blob=canonical, comment=comment, bits=bits)


def _ed25519_small_order(point: bytes) -> bool:
    """True for every encoding (canonical or not, either sign bit) of a point of small order."""
    y = int.from_bytes(point, "little") & ((1 << 255) - 1)
    return y % ED25519_P in ED25519_SMALL_ORDER_Y


def _canonical_blob(key_type: str, blob: bytes) -> bytes:
    """Load the key for real and return the blob rebuilt from the parsed numbers, as ssh-keygen
    writes it: an ECDSA point off its curve or an unusable RSA exponent is refused (OpenSSH would
    accept some of them and the key would be worthless or weak), and one key has one encoding,
    hence one fingerprint (redundant zero bytes in an RSA mpint or a compressed ECDSA point do
    not make the same key look new)."""
    line = f"{key_type} {base64.b64encode(blob).decode()}".encode()
    try:
        key = serialization.load_ssh_public_key(line)
    except (ValueError, UnsupportedAlgorithm, NotImplementedError) as exc:
        if key_type.startswith("ecdsa-"):
            raise InvalidKey(_("The key data is not a valid ECDSA key.")) from exc
        if key_type == "ssh-rsa":
            raise InvalidKey(_("The key data is not a valid RSA key.")) from exc
        raise InvalidKey(_("The key data is not a valid ed25519 key.")) from exc
    rebuilt = key.public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).split()
    if rebuilt[0].decode() != key_type:
        raise InvalidKey(_("The key data does not match its type."))
    return base64.b64decode(rebuilt[1])
