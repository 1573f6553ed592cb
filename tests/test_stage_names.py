"""The stages the engine really times reach the studio's per-stage graph, whichever backend
(flashtalk's: tests/flashtalk/test_streaming_pipeline.py).

The graph used to group stage names nobody emits ("render", "queue_wait", "denoise...") and
missed the puppet's `warp` and `mouth_interior` and flashtalk's `host_copy`: those never showed.
"""
from __future__ import annotations

import numpy as np
import pytest

from avkit.portrait_image import load_portrait
from engine.backends import create_backend
from engine.protocol.messages import SessionSettings
from engine.protocol.stages import Stage, is_known_stage, stage_group
from studio.engine_link.received_chunk import ReceivedChunk
from studio.session_stats import STAGE_GROUPS, SessionStats

from .conftest import ASSETS


def _graphed(timings: dict) -> dict[str, float]:
    """What the studio's chunk ring holds for these timings, by group (the graph's lines)."""
    stats = SessionStats(t0=0.0)
    frames = np.zeros((1, 2, 2, 3), np.uint8)
    stats.on_chunk(ReceivedChunk(0, frames, np.zeros(640, np.float32), 0.0, False, timings, 1.0, 2.0))
    values = {group: stats.chunks.last(group) for group in STAGE_GROUPS if group != "transport"}
    return {group: ms for group, ms in values.items() if np.isfinite(ms)}


def check_every_stage_is_graphed(timings: dict) -> None:
    """Every key is a known stage, every per-chunk one lands on a line of the graph, none is lost."""
    per_chunk = {k: v for k, v in timings.items() if k != Stage.CHUNK_TOTAL}
    assert all(is_known_stage(k) for k in timings), timings.keys()
    assert all(stage_group(k) is not None for k in per_chunk), per_chunk.keys()
    graphed = _graphed(timings)
    assert sum(graphed.values()) == pytest.approx(sum(per_chunk.values()))


def test_every_puppet_stage_is_on_the_graph():
    backend = create_backend("puppet")
    stream = backend.open_stream(load_portrait(ASSETS / "portrait.png"), SessionSettings(width=128, height=128))
    result = stream.generate(np.zeros(stream.context_samples, np.float32))
    assert {Stage.WARP, Stage.MOUTH_INTERIOR} <= result.timings.keys()
    check_every_stage_is_graphed(result.timings)
    assert _graphed(result.timings)["render"] > 0  # the warp is drawn
