"""The ``herd`` command.

``herd serve`` supervises ``herd core`` and ``herd gateway`` as child processes: one Ctrl-C stops
both (and core stops its runners). The servers run as ``python -m`` modules so this client
package never imports server code.
"""

from __future__ import annotations

import argparse
import os
import signal
import socket
import subprocess
import sys
import time
from importlib.metadata import PackageNotFoundError, version

from herd.cli.api import ApiError, Client
from herd.cli.commands import add_commands
from herd.cli.run import add_run_command, bare_flags_as_true
from herd.cloud_key import ensure_key, key_path
from herd.grpc_env import server_environment

CORE_MODULE = "herd.core.server"
GATEWAY_MODULE = "herd.rest.app"
DEFAULT_GRPC_HOST = "127.0.0.1:50051"


def herd_version() -> str:
    try:
        return version("herd")
    except PackageNotFoundError:
        return "0.0.0"


def _split_host_port(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    return host.strip("[]") or "127.0.0.1", int(port)


def _wait_for_port(address: str, process: subprocess.Popen, timeout_s: float) -> bool:
    """True once ``address`` accepts connections; False if ``process`` exits first or time runs out."""
    host, port = _split_host_port(address)
    if host in ("0.0.0.0", "::"):
        host = "127.0.0.1"
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if process.poll() is not None:
            return False
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return True
        except OSError:
            time.sleep(0.1)
    return False


def _run_module(module: str, env: dict | None = None) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", module], env=env)


def _ensure_cloud_key() -> None:
    """The key cloud requests are signed with, made as ``ollama serve`` makes it (never replaced)."""
    path = key_path()
    if not path.exists():
        print(f"Couldn't find '{path}'. Generating new private key.")
    try:
        public_key = ensure_key(path)
    except OSError as error:
        # A read-only home still serves local models; cloud requests then answer 401.
        print(f"herd: could not create {path}: {error.strerror}", file=sys.stderr)
        return
    if public_key is not None:
        print(f"Your new public key is: \n\n{public_key}\n", flush=True)


def serve(args: argparse.Namespace) -> int:
    _ensure_cloud_key()
    env = server_environment(os.environ)
    env.setdefault("HERD_GRPC_HOST", DEFAULT_GRPC_HOST)
    children: list[subprocess.Popen] = []
    stopping = False

    def stop(*_):
        nonlocal stopping
        stopping = True

    signal.signal(signal.SIGINT, stop)
    signal.signal(signal.SIGTERM, stop)
    core = _run_module(CORE_MODULE, env)
    children.append(core)
    try:
        # The first start imports the bundled models before core listens.
        if not _wait_for_port(env["HERD_GRPC_HOST"], core, timeout_s=600):
            if not stopping:
                print("herd: core did not start", file=sys.stderr)
            return 1
        children.append(_run_module(GATEWAY_MODULE, env))
        while not stopping and all(child.poll() is None for child in children):
            time.sleep(0.2)
        return 0 if stopping else 1
    finally:
        for child in children:
            if child.poll() is None:
                child.send_signal(signal.SIGTERM)
        for child in children:
            try:
                child.wait(timeout=15)
            except subprocess.TimeoutExpired:
                child.kill()


def run_core(args: argparse.Namespace) -> int:
    os.execve(sys.executable, [sys.executable, "-m", CORE_MODULE], server_environment(os.environ))


def run_gateway(args: argparse.Namespace) -> int:
    if args.core:
        os.environ["HERD_GRPC_HOST"] = args.core
    os.execve(sys.executable, [sys.executable, "-m", GATEWAY_MODULE], server_environment(os.environ))


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="herd", description="A local LLM runtime compatible with Ollama.")
    parser.add_argument("-v", "--version", action="version", version=f"herd version is {herd_version()}")
    commands = parser.add_subparsers(dest="command", required=True)
    commands.add_parser("serve", aliases=["start"], help="start core and gateway together").set_defaults(func=serve)
    commands.add_parser("core", help="start the gRPC core (HERD_GRPC_HOST)").set_defaults(func=run_core)
    gateway = commands.add_parser("gateway", help="start the REST gateway (OLLAMA_HOST)")
    gateway.add_argument("--core", metavar="ADDR", help=f"core's gRPC address (default $HERD_GRPC_HOST or {DEFAULT_GRPC_HOST})")
    gateway.set_defaults(func=run_gateway)
    add_run_command(commands)
    add_commands(commands)
    # Flags may come between the words of a `run` prompt, as cobra allows for `ollama run`.
    args, extra = parser.parse_known_args(bare_flags_as_true(sys.argv[1:] if argv is None else argv))
    if extra and (args.command != "run" or any(word.startswith("-") for word in extra)):
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    if extra:
        args.prompt += extra
    if args.func in (serve, run_core, run_gateway):
        return args.func(args)
    try:
        return args.func(args, Client())
    except ApiError as error:
        print(f"Error: {error}", file=sys.stderr)
        return 1


if __name__ == "__main__":
    sys.exit(main())
