"""A live session's state on a real puppet stream: preparing -> running -> draining -> ended."""
from __future__ import annotations

import numpy as np

from avkit.portrait_image import load_portrait
from engine.backends import create_backend
from engine.protocol.messages import SessionSettings
from engine.session import LiveSession, SessionState

from .conftest import ASSETS, wait_for

SIZE = dict(width=128, height=128)


def _session(mode: str) -> LiveSession:
    return LiveSession("s", create_backend("puppet"), load_portrait(ASSETS / "portrait.png"),
                       SessionSettings(mode=mode, **SIZE))


def test_a_file_session_drains_its_audio_and_ends():
    session = _session("file")
    try:
        assert session.ready.wait(30) and session.state is SessionState.RUNNING
        session.push_audio(np.zeros(16000, np.float32), 16000, 1, 0.0)
        session.end_audio()
        assert session.state in (SessionState.DRAINING, SessionState.ENDED)
        session.push_audio(np.ones(16000, np.float32), 16000, 1, 1.0)  # after the end: ignored
        assert session.finished.wait(30) and session.state is SessionState.ENDED
        frames = 0
        while (out := session.pop_chunk()) is not None:
            frames += len(out.frames)
        assert frames == 25  # one second: the audio before end_audio, nothing after it
    finally:
        session.close()


def test_closing_a_running_live_session_ends_it():
    session = _session("live")
    assert session.ready.wait(30) and session.state is SessionState.RUNNING
    session.close()
    wait_for(session.finished.is_set, timeout=10)
    assert session.state is SessionState.ENDED and session.error is None
