"""A real Docker registry (Debian's ``docker-registry``, i.e. distribution 2.x) for tests.

``running_registry`` starts one on a free loopback port with its storage in a temporary directory and
stops it afterwards; the ``registry`` fixture yields its ``"127.0.0.1:<port>"`` and skips the test
when the binary is not installed (``apt-get install docker-registry``).
"""

from __future__ import annotations

import shutil
import socket
import subprocess
import time
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import httpx
import pytest

REGISTRY_BINARY = "docker-registry"
_START_TIMEOUT_S = 15.0


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


@contextmanager
def running_registry(root: Path) -> Iterator[str]:
    """A registry storing under ``root``, answering plain HTTP on 127.0.0.1; yields ``host:port``."""
    binary = shutil.which(REGISTRY_BINARY) or shutil.which(REGISTRY_BINARY, path="/usr/bin")
    if binary is None:
        pytest.skip(f"{REGISTRY_BINARY} is not installed (apt-get install docker-registry)")
    root.mkdir(parents=True, exist_ok=True)
    address = f"127.0.0.1:{_free_port()}"
    config = root / "config.yml"
    # No auth section: the registry accepts anonymous pushes. Deleting is enabled so a test can
    # remove a blob to make a registry-side fault.
    config.write_text(
        "version: 0.1\n"
        "log:\n  level: warn\n"
        "storage:\n"
        f"  filesystem:\n    rootdirectory: {root / 'data'}\n"
        "  delete:\n    enabled: true\n"
        f"http:\n  addr: {address}\n"
    )
    log_path = root / "registry.log"
    with open(log_path, "wb") as log_file:
        process = subprocess.Popen([binary, "serve", str(config)], stdout=log_file, stderr=subprocess.STDOUT)
    try:
        _wait_until_ready(address, process, log_path)
        yield address
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()


def _wait_until_ready(address: str, process: subprocess.Popen, log_path: Path) -> None:
    deadline = time.monotonic() + _START_TIMEOUT_S
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"docker-registry exited with {process.returncode}:\n{log_path.read_text()}")
        try:
            if httpx.get(f"http://{address}/v2/", timeout=1.0).status_code == 200:
                return
        except httpx.TransportError:
            pass
        time.sleep(0.05)
    raise RuntimeError(f"docker-registry did not answer on {address}:\n{log_path.read_text()}")


@pytest.fixture
def registry(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    """A fresh, empty registry for one test: ``"127.0.0.1:<port>"``."""
    with running_registry(tmp_path_factory.mktemp("registry")) as address:
        yield address


def statuses(lines: list[dict[str, Any]]) -> list[str]:
    """The distinct progress statuses in order (per-blob lines repeat while bytes arrive)."""
    result: list[str] = []
    for line in lines:
        if not result or result[-1] != line["status"]:
            result.append(line["status"])
    return result
