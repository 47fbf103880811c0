"""The Node client in clients/node against the real server, and buf lint / breaking on proto/."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import grpc
import pytest

from herd.v1 import common_pb2, inference_pb2, inference_pb2_grpc
from tests.conftest import CHAT_MODEL

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
NODE_DIR = ROOT / "clients" / "node"
BUF = NODE_DIR / "node_modules" / ".bin" / "buf"
RELEASED_PROTOS = ROOT / "proto" / "releases" / "v0.1.0.binpb"
PROMPT = "Why is the sky blue?"
GREEDY = {"temperature": 0, "num_predict": 16}


def run(args: list[str], cwd: Path = NODE_DIR, **env: str) -> subprocess.CompletedProcess:
    return subprocess.run(args, cwd=cwd, env={**os.environ, **env}, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="session")
def node_client() -> Path:
    if not (shutil.which("node") and shutil.which("npm")):
        pytest.skip("node and npm are not on PATH (.ci/run installs Debian's nodejs and npm)")
    installed = run(["npm", "ci", "--no-audit", "--no-fund"])
    assert installed.returncode == 0, installed.stderr
    return NODE_DIR


def generate_example(server, *args: str) -> subprocess.CompletedProcess:
    return run(["node", "examples/generate.js", *args], HERD_GRPC_HOST=server.grpc_address)


def python_grpc_text(server) -> str:
    request = inference_pb2.GenerateRequest(model=CHAT_MODEL, prompt=PROMPT, options=common_pb2.Options(**GREEDY))
    with grpc.insecure_channel(server.grpc_address) as channel:
        return "".join(r.response for r in inference_pb2_grpc.InferenceStub(channel).Generate(request, timeout=120))


def test_example_streams_what_python_and_rest_return(node_client, server, client):
    expected = python_grpc_text(server)
    assert expected and client.generate(model=CHAT_MODEL, prompt=PROMPT, options=GREEDY).response == expected

    plain = generate_example(server, CHAT_MODEL, PROMPT, "--options", json.dumps(GREEDY))
    assert (plain.returncode, plain.stderr) == (0, "")
    assert plain.stdout == expected + "\n"

    streamed = generate_example(server, CHAT_MODEL, PROMPT, "--options", json.dumps(GREEDY), "--json")
    assert streamed.returncode == 0, streamed.stderr
    pieces = [json.loads(line) for line in streamed.stdout.splitlines()]
    assert len([p for p in pieces if p["response"]]) > 1
    assert [p["done"] for p in pieces] == [False] * (len(pieces) - 1) + [True]
    assert pieces[-1]["metrics"]["eval_count"] == GREEDY["num_predict"]
    assert "".join(p["response"] for p in pieces) == expected


def test_example_fails_with_one_error_line(node_client, server):
    missing = generate_example(server, "no-such-model", PROMPT)
    assert (missing.returncode, missing.stdout) == (1, "")
    assert missing.stderr == "error: NOT_FOUND: model 'no-such-model' not found\n"

    usage = generate_example(server, CHAT_MODEL)
    assert usage.returncode == 2
    assert usage.stderr.startswith("error: usage: generate.js MODEL PROMPT") and usage.stderr.count("\n") == 1


@pytest.mark.parametrize("script", ["proto:lint", "proto:breaking"])
def test_protos_pass_buf(node_client, script):
    checked = run(["npm", "run", "--silent", script])
    assert checked.returncode == 0, checked.stdout + checked.stderr


def test_breaking_check_catches_a_removed_field(node_client, tmp_path):
    protos = shutil.copytree(ROOT / "proto", tmp_path / "proto", ignore=shutil.ignore_patterns("releases"))
    inference = protos / "herd" / "v1" / "inference.proto"
    source = inference.read_text()
    assert "  bool raw = 7;\n" in source
    inference.write_text(source.replace("  bool raw = 7;\n", ""))

    checked = run([str(BUF), "breaking", str(protos), "--against", str(RELEASED_PROTOS)])
    assert checked.returncode != 0
    assert 'Previously present field "7" with name "raw" on message "GenerateRequest" was deleted.' in checked.stdout
