"""Core's settings, read once from Ollama's environment variables and herd's own."""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from herd.durations import parse_env_duration
from herd.limits import DEFAULT_MAX_MESSAGES, DEFAULT_MAX_PROMPT_BYTES, limit_from_env

DEFAULT_KEEP_ALIVE_NS = 5 * 60 * 1_000_000_000
DEFAULT_NUM_CTX = 4096
DEFAULT_LOAD_TIMEOUT_NS = 5 * 60 * 1_000_000_000
# As Ollama on a CPU: three models at once when OLLAMA_MAX_LOADED_MODELS is 0 or unset.
DEFAULT_MAX_LOADED_MODELS = 3
DEFAULT_MAX_QUEUE = 512  # as Ollama's OLLAMA_MAX_QUEUE
# Orphaned blobs younger than this may belong to a create or pull still in progress.
PRUNE_GRACE_S = 3600
# Shortest time between two streamed messages of one request (0: one message per token).
# Each message wakes runner, core, gateway and client while the decode threads want every
# core: on 2 cores one message per token cost 10-15 % of decode speed, one per 50 ms (20 a
# second, still smooth to read) about 4 % (scripts/bench.py).
DEFAULT_STREAM_INTERVAL_MS = 50.0
# Above the gateway's 100 MiB body limit, so that any body the gateway takes fits in one message.
DEFAULT_GRPC_MAX_MESSAGE_BYTES = 128 << 20


def _env(environ, name: str) -> str:
    # Ollama strips surrounding quotes and spaces from every value.
    return environ.get(name, "").strip().strip("\"'").strip()


@dataclass(frozen=True)
class CoreSettings:
    grpc_address: str = "127.0.0.1:50051"
    models_dir: Path = Path.home() / ".herd" / "models"
    keep_alive_ns: int = DEFAULT_KEEP_ALIVE_NS
    context_length: int = 0  # 0: DEFAULT_NUM_CTX, capped by the model's training context
    num_parallel: int = 0  # 0: chosen per model
    load_timeout_ns: int = DEFAULT_LOAD_TIMEOUT_NS
    stream_interval_ms: float = DEFAULT_STREAM_INTERVAL_MS
    runtime_dir: Path | None = None  # where runner sockets live; None: a fresh temp dir
    import_bundled: bool = True
    prune: bool = True  # OLLAMA_NOPRUNE turns it off
    max_loaded_models: int = 0  # 0: DEFAULT_MAX_LOADED_MODELS
    max_queue: int = DEFAULT_MAX_QUEUE  # requests waiting for a runner or a slot, beyond which 503
    metrics_address: str = ""  # host:port of core's Prometheus exporter; empty: none
    api_key: str = ""  # HERD_API_KEY: every call but health checks wants it
    tls_cert: str = ""  # HERD_GRPC_TLS_CERT and HERD_GRPC_TLS_KEY (PEM files): serve gRPC over TLS
    tls_key: str = ""
    grpc_max_message_bytes: int = DEFAULT_GRPC_MAX_MESSAGE_BYTES
    max_prompt_bytes: int = DEFAULT_MAX_PROMPT_BYTES
    max_messages: int = DEFAULT_MAX_MESSAGES

    @classmethod
    def from_env(cls, environ=os.environ) -> "CoreSettings":
        values = {}
        if host := _env(environ, "HERD_GRPC_HOST"):
            values["grpc_address"] = host
        if models := _env(environ, "OLLAMA_MODELS"):
            values["models_dir"] = Path(models).expanduser()
        if keep := _env(environ, "OLLAMA_KEEP_ALIVE"):
            values["keep_alive_ns"] = parse_env_duration(keep, DEFAULT_KEEP_ALIVE_NS)
        if ctx := _env(environ, "OLLAMA_CONTEXT_LENGTH"):
            values["context_length"] = max(0, int(ctx))
        if parallel := _env(environ, "OLLAMA_NUM_PARALLEL"):
            values["num_parallel"] = max(0, int(parallel))
        if timeout := _env(environ, "OLLAMA_LOAD_TIMEOUT"):
            values["load_timeout_ns"] = parse_env_duration(timeout, DEFAULT_LOAD_TIMEOUT_NS)
        if interval := _env(environ, "HERD_STREAM_INTERVAL_MS"):
            values["stream_interval_ms"] = max(0.0, float(interval))
        if _env(environ, "OLLAMA_NOPRUNE") not in ("", "0", "false"):
            values["prune"] = False
        if loaded := _env(environ, "OLLAMA_MAX_LOADED_MODELS"):
            values["max_loaded_models"] = max(0, int(loaded))
        if queue := _env(environ, "OLLAMA_MAX_QUEUE"):
            values["max_queue"] = max(0, int(queue))
        if metrics := _env(environ, "HERD_METRICS_HOST"):
            values["metrics_address"] = metrics
        if _env(environ, "HERD_NO_BUNDLED") in ("1", "true"):
            values["import_bundled"] = False
        values["api_key"] = _env(environ, "HERD_API_KEY")
        values["tls_cert"] = _env(environ, "HERD_GRPC_TLS_CERT")
        values["tls_key"] = _env(environ, "HERD_GRPC_TLS_KEY")
        values["grpc_max_message_bytes"] = limit_from_env(
            environ, "HERD_GRPC_MAX_MESSAGE_BYTES", DEFAULT_GRPC_MAX_MESSAGE_BYTES)
        values["max_prompt_bytes"] = limit_from_env(environ, "HERD_MAX_PROMPT_BYTES", DEFAULT_MAX_PROMPT_BYTES)
        values["max_messages"] = limit_from_env(environ, "HERD_MAX_MESSAGES", DEFAULT_MAX_MESSAGES)
        return cls(**values)
