"""A `Frames` message's buffers as arrays: the frames to show and the audio they present."""
from __future__ import annotations

import numpy as np

from engine.protocol.codec import ProtocolError
from engine.protocol.messages import Frames

RGB_CHANNELS = 3
AUDIO_BYTES_PER_SAMPLE = 4  # float32 mono


def decode_frames(msg: Frames) -> tuple[np.ndarray, np.ndarray]:
    """-> (uint8 [count, height, width, 3] frames, float32 [count * spf] audio), read-only views on
    the message's buffers (no copy). A size that does not match the header is a ProtocolError."""
    if min(msg.count, msg.width, msg.height) < 0:
        raise ProtocolError(f"frames: negative size {msg.count}x{msg.height}x{msg.width}")
    expected = msg.count * msg.height * msg.width * RGB_CHANNELS
    if len(msg.rgb) != expected:
        raise ProtocolError(f"frames: {len(msg.rgb)} bytes of RGB for {msg.count} frames of "
                            f"{msg.width}x{msg.height} ({expected} expected)")
    if len(msg.audio) % AUDIO_BYTES_PER_SAMPLE:
        raise ProtocolError(f"frames: {len(msg.audio)} bytes of audio is no whole number of float32 samples")
    # [N*H*W*3] -> [N, H, W, 3]
    frames = np.frombuffer(msg.rgb, np.uint8).reshape(msg.count, msg.height, msg.width, RGB_CHANNELS)
    audio = np.frombuffer(msg.audio, np.float32)  # [N * spf]
    return frames, audio
