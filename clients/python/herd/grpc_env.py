"""The environment herd's server processes start with, for grpcio.

grpcio reads ``GRPC_EXPERIMENTS`` once, as it loads, so a server process must be started with it:
``herd serve``, ``herd core`` and ``herd gateway`` start core and the gateway so, and core's runners
inherit core's environment.
"""

from __future__ import annotations

from collections.abc import Mapping

# Without grpcio's EventEngine (I/O on threads of its own, handing each event on to grpc.aio's
# poller thread), a message wakes fewer threads: over one stream's 24 requests in scripts/bench.py,
# core switched context 4,412 times instead of 8,327, the gateway 2,785 instead of 5,902, the
# runner 9,011 instead of 12,621. On a CPU each wake-up takes a core from a decode thread, and
# llama.cpp's other threads wait for it at their barrier: one stream ran 3 % faster (6 rounds
# alternated with the EventEngine on; 4.5 % in the median round). At 4 and 8 streams, where
# messages leave together, the difference was within the noise.
SERVER_GRPC_EXPERIMENTS = "-event_engine_client,-event_engine_listener"


def server_environment(environ: Mapping[str, str]) -> dict[str, str]:
    """``environ`` with herd's gRPC settings, unless it has its own ``GRPC_EXPERIMENTS``."""
    env = dict(environ)
    env.setdefault("GRPC_EXPERIMENTS", SERVER_GRPC_EXPERIMENTS)
    return env
