"""How often a runner sends each stream a message: the CPU budget shared by all its streams."""

from dataclasses import dataclass

import pytest

from herd.core.runner.service import MESSAGES_PER_SECOND, RunnerService


@dataclass
class EngineOn:
    vram_bytes: int  # 0: the model runs on the CPU


@pytest.mark.parametrize(("streams", "expected"), [(1, 0.05), (2, 0.05), (4, 4 / MESSAGES_PER_SECOND), (16, 16 / MESSAGES_PER_SECOND)])
def test_on_cpu_the_interval_grows_with_the_streams_beyond_the_configured_one(streams, expected):
    service = RunnerService(EngineOn(vram_bytes=0), stream_interval_s=0.05)
    service._streams = streams
    assert service._send_interval() == pytest.approx(expected)


def test_offloaded_models_and_one_message_per_token_keep_the_configured_interval():
    offloaded = RunnerService(EngineOn(vram_bytes=1 << 30), stream_interval_s=0.05)
    offloaded._streams = 16
    assert offloaded._send_interval() == 0.05
    per_token = RunnerService(EngineOn(vram_bytes=0), stream_interval_s=0.0)
    per_token._streams = 16
    assert per_token._send_interval() == 0.0
