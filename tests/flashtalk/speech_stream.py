"""Drive a backend stream with the sample speech the way a session does: one window per chunk."""
from __future__ import annotations

import numpy as np

from avkit.audio_decode import load_audio
from avkit.portrait_image import load_portrait
from engine.protocol.messages import SessionSettings
from tests.conftest import ASSETS


def stream_speech_frames(backend, settings: SessionSettings, chunks: int) -> np.ndarray:
    """-> uint8 [chunks, chunk_frames, H, W, 3] for the default portrait saying assets/speech.wav."""
    speech = load_audio(ASSETS / "speech.wav")
    stream = backend.open_stream(load_portrait(ASSETS / "portrait.png"), settings)
    out = []
    for i in range(chunks):
        end = (i + 1) * stream.chunk_frames * 640
        window = speech[max(0, end - stream.context_samples):end]
        out.append(stream.generate(np.pad(window, (stream.context_samples - window.size, 0))).frames)
    stream.close()
    return np.stack(out)
