"""The daemon's key and signature in Ollama's formats, and the cloud base URL's rules."""

from __future__ import annotations

import base64
import stat

import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey

from herd.cloud_key import KeyUnavailable, ensure_key, load_key, sign, signin_url
from herd.rest.cloud.proxy import signed_query
from herd.rest.cloud.settings import DEFAULT_BASE_URL, CloudSettings, InvalidBaseURL, origin_of


def test_key_is_made_once_in_openssh_format_and_never_replaced(tmp_path):
    path = tmp_path / ".ollama" / "id_ed25519"
    line = ensure_key(path)
    assert line is not None and line.startswith("ssh-ed25519 AAAA")
    assert path.read_bytes().startswith(b"-----BEGIN OPENSSH PRIVATE KEY-----")
    assert stat.S_IMODE(path.stat().st_mode) == 0o600
    pub = path.with_name("id_ed25519.pub")
    assert pub.read_text() == line + "\n"
    assert stat.S_IMODE(pub.stat().st_mode) == 0o644
    before = path.read_bytes()
    assert ensure_key(path) is None
    assert path.read_bytes() == before


def test_signature_is_pubkey_colon_base64_signature_and_verifies(tmp_path):
    path = tmp_path / "id_ed25519"
    line = ensure_key(path)
    challenge = b"POST,/v1/messages?beta=true&ts=123"
    header = sign(load_key(path), challenge)
    wire_key, signature = header.split(":")
    assert wire_key == line.split(" ")[1]
    public = serialization.load_ssh_public_key(line.encode())
    assert isinstance(public, Ed25519PublicKey)
    public.verify(base64.b64decode(signature), challenge)  # raises if it does not verify


def test_missing_or_garbled_key_cannot_sign(tmp_path):
    with pytest.raises(KeyUnavailable):
        load_key(tmp_path / "absent")
    (tmp_path / "bad").write_text("not a key")
    with pytest.raises(KeyUnavailable):
        load_key(tmp_path / "bad")


def test_signin_url_carries_hostname_and_base64url_public_key(tmp_path):
    path = tmp_path / "id_ed25519"
    line = ensure_key(path)
    url = signin_url(load_key(path), "my host/1")
    key = base64.urlsafe_b64encode(line.encode()).decode().rstrip("=")
    assert url == f"https://ollama.com/connect?name=my%20host%2F1&key={key}"


def test_signed_query_sets_ts_and_sorts_keys_as_go_encodes():
    assert signed_query("", 123) == "ts=123"
    assert signed_query("beta=true", 123) == "beta=true&ts=123"
    assert signed_query("z=1&ts=9&a=b+c&a=%2F", 7) == "a=b+c&a=%2F&ts=7&z=1"


@pytest.mark.parametrize(
    ("raw", "origin"),
    [
        ("https://ollama.com:443", "https://ollama.com:443"),
        ("https://gpu.example.com/", "https://gpu.example.com"),
        ("http://127.0.0.1:8080", "http://127.0.0.1:8080"),
        ("http://localhost:1", "http://localhost:1"),
        ("http://[::1]:9", "http://[::1]:9"),
    ],
)
def test_accepted_base_urls(raw, origin):
    assert origin_of(raw) == origin


@pytest.mark.parametrize(
    "raw",
    ["http://gpu.example.com", "https://user:pw@ollama.com", "https://ollama.com/api", "https://ollama.com/?a=1",
     "https://ollama.com/#f", "ollama.com", "ftp://127.0.0.1", "https://ollama.com:99999"],
)
def test_refused_base_urls(raw):
    with pytest.raises(InvalidBaseURL):
        origin_of(raw)


def test_refused_override_keeps_the_default(tmp_path):
    settings = CloudSettings.from_env({"HOME": str(tmp_path), "OLLAMA_CLOUD_BASE_URL": "https://u:p@evil.example"})
    assert settings.base_url == DEFAULT_BASE_URL
    assert settings.key_path == tmp_path / ".ollama" / "id_ed25519"


@pytest.mark.parametrize(
    ("env", "config", "source"),
    [("", False, "none"), ("1", False, "env"), ("yes", False, "env"), ("false", True, "config"),
     ("true", True, "both"), ("0", False, "none")],
)
def test_cloud_switches(tmp_path, env, config, source):
    if config:
        (tmp_path / ".ollama").mkdir()
        (tmp_path / ".ollama" / "server.json").write_text('{"disable_ollama_cloud": true}')
    settings = CloudSettings.from_env({"HOME": str(tmp_path), "OLLAMA_NO_CLOUD": env})
    assert settings.disabled_source == source
    assert settings.disabled is (source != "none")
