"""Fixtures that start the real server: ``herd serve`` on free ports with the bundled models."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import httpx
import pytest

CHAT_MODEL = "smollm2:135m"
BASE_MODEL = "gemma3:270m-pt"
# A ``format`` that holds an answer open for 2,000 characters at least (hundreds of tokens, seconds on a CPU):
# a test that must catch a generation still running cannot lose the race to the model ending its story early.
LONG_ANSWER_FORMAT = {"type": "string", "minLength": 2000}


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class Server:
    base_url: str
    grpc_address: str
    models_dir: Path
    process: subprocess.Popen
    log_path: Path

    def log_text(self) -> str:
        return self.log_path.read_text(errors="replace")


def start_server(tmp: Path, bind: str = "127.0.0.1", **env_overrides: str) -> Server:
    """``herd serve`` with gateway and core listening on ``bind`` (reached on 127.0.0.1 either way)."""
    port, grpc_port = free_port(), free_port()
    models = tmp / "models"
    env = dict(
        os.environ,
        OLLAMA_MODELS=str(models),
        OLLAMA_HOST=f"{bind}:{port}",
        HERD_GRPC_HOST=f"{bind}:{grpc_port}",
        HERD_LOG_FORMAT="json",
        # herd serve makes the cloud key in ~/.ollama: a test's server never touches the real home.
        HOME=str(tmp / "home"),
    )
    env.update(env_overrides)
    log_path = tmp / "server.log"
    log_file = log_path.open("wb")
    # Its own session, so that kill_server can take down the whole tree (core, gateway, runners) at once.
    process = subprocess.Popen(
        [sys.executable, "-m", "herd.cli.main", "serve"],
        env=env,
        stdout=log_file,
        stderr=subprocess.STDOUT,
        start_new_session=True,
    )
    server = Server(f"http://127.0.0.1:{port}", f"127.0.0.1:{grpc_port}", models, process, log_path)
    deadline = time.monotonic() + 300
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError("herd serve exited:\n" + server.log_text()[-4000:])
        try:
            if httpx.get(server.base_url + "/api/version", timeout=1).status_code == 200:
                return server
        except httpx.HTTPError:
            pass
        time.sleep(0.2)
    stop_server(server)
    raise RuntimeError("herd serve did not answer in time:\n" + server.log_text()[-4000:])


def stop_server(server: Server) -> int:
    server.process.terminate()
    try:
        return server.process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        server.process.kill()
        return server.process.wait()


def kill_server(server: Server) -> None:
    """SIGKILL to every process of the server at once: what a power cut or the OOM killer does."""
    os.killpg(server.process.pid, signal.SIGKILL)
    server.process.wait()


@pytest.fixture(scope="session")
def server(tmp_path_factory) -> Server:
    srv = start_server(tmp_path_factory.mktemp("herd"))
    yield srv
    stop_server(srv)


@pytest.fixture
def client(server):
    import ollama

    return ollama.Client(host=server.base_url, timeout=300)
