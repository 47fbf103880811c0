"""The gRPC settings herd's server processes start with."""

from herd.grpc_env import server_environment


def test_server_processes_get_grpcio_without_its_event_engine_and_keep_the_rest():
    env = server_environment({"PATH": "/usr/bin", "OLLAMA_HOST": "127.0.0.1:1"})
    assert env == {"PATH": "/usr/bin", "OLLAMA_HOST": "127.0.0.1:1",
                   "GRPC_EXPERIMENTS": "-event_engine_client,-event_engine_listener"}


def test_a_users_own_grpc_experiments_win():
    assert server_environment({"GRPC_EXPERIMENTS": "event_engine_client"})["GRPC_EXPERIMENTS"] == "event_engine_client"
