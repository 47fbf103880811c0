"""The ed25519 identity Ollama's daemon signs cloud requests with, kept where Ollama keeps it.

``~/.ollama/id_ed25519`` (OpenSSH format, 0600) and ``id_ed25519.pub`` (0644): a key an existing
``ollama signin`` linked to an account works for herd unchanged. A signature is Ollama's
``auth.Sign``: ``<base64 ssh-wire public key>:<base64 of the 64-byte signature>``.
"""

from __future__ import annotations

import base64
import os
from pathlib import Path
from urllib.parse import quote

from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PrivateKey

KEY_NAME = "id_ed25519"
SIGNIN_URL = "https://ollama.com/connect?name={name}&key={key}"


class KeyUnavailable(Exception):
    """No readable ed25519 key: the daemon cannot sign and must not call the cloud."""


def key_path(home: Path | None = None) -> Path:
    return (home or Path.home()) / ".ollama" / KEY_NAME


def ensure_key(path: Path) -> str | None:
    """Creates the key pair if ``path`` does not exist; the new public key line, or None if it existed.

    An existing key is never replaced, even by a concurrent start: the file is created exclusively.
    """
    if path.exists():
        return None
    path.parent.mkdir(parents=True, exist_ok=True)
    key = Ed25519PrivateKey.generate()
    pem = key.private_bytes(serialization.Encoding.PEM, serialization.PrivateFormat.OpenSSH,
                            serialization.NoEncryption())
    try:
        fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except FileExistsError:
        return None
    with os.fdopen(fd, "wb") as file:
        file.write(pem)
    line = public_key_line(key)
    pub = path.with_name(path.name + ".pub")
    pub.write_text(line + "\n")
    pub.chmod(0o644)
    return line


def load_key(path: Path) -> Ed25519PrivateKey:
    try:
        key = serialization.load_ssh_private_key(path.read_bytes(), password=None)
    except (OSError, ValueError, TypeError) as error:
        raise KeyUnavailable(type(error).__name__) from None
    if not isinstance(key, Ed25519PrivateKey):
        raise KeyUnavailable("not an ed25519 key")
    return key


def public_key_line(key: Ed25519PrivateKey) -> str:
    """``ssh-ed25519 AAAA…``, as in an authorized_keys file."""
    return key.public_key().public_bytes(serialization.Encoding.OpenSSH, serialization.PublicFormat.OpenSSH).decode()


def sign(key: Ed25519PrivateKey, data: bytes) -> str:
    wire_key = public_key_line(key).split(" ")[1]
    return f"{wire_key}:{base64.b64encode(key.sign(data)).decode()}"


def encoded_public_key(key: Ed25519PrivateKey) -> str:
    """The public key line in unpadded base64url: how ollama.com names a key in URLs."""
    return base64.urlsafe_b64encode(public_key_line(key).encode()).decode().rstrip("=")


def signin_url(key: Ed25519PrivateKey, hostname: str) -> str:
    """Where a person links this key to an ollama.com account (Ollama's ``signinURL``)."""
    return SIGNIN_URL.format(name=quote(hostname, safe="$&+:=@"), key=encoded_public_key(key))
