"""Decode an audio file (WAV/FLAC/MP3/OGG/...) to mono float32 at the timeline rate."""
from __future__ import annotations

from pathlib import Path

import av
import numpy as np

from avkit.resample import StreamResampler
from avkit.timeline import SAMPLE_RATE

MAX_AUDIO_SECONDS = 4 * 3600  # longer files are refused before decoding everything


class AudioFileError(ValueError):
    """An audio file we cannot use; str() is one line saying what to do."""


def load_audio(path: str | Path, sample_rate: int = SAMPLE_RATE,
               max_seconds: float = MAX_AUDIO_SECONDS) -> np.ndarray:
    path = Path(path)
    if not path.is_file():
        raise AudioFileError(f"audio file not found: {path}")
    try:
        container = av.open(str(path), mode="r")
    except (av.error.FFmpegError, UnicodeDecodeError, ValueError) as exc:
        raise AudioFileError(f"cannot read {path.name} as audio ({_reason(exc)}): "
                             "use a WAV, FLAC, MP3 or OGG file") from None
    with container:
        if not container.streams.audio:
            raise AudioFileError(f"{path.name} has no audio stream: use a WAV, FLAC, MP3 or OGG file")
        return _decode_stream(container, path, sample_rate, max_seconds)


def _decode_stream(container, path: Path, sample_rate: int, max_seconds: float) -> np.ndarray:
    stream = container.streams.audio[0]
    resampler = None
    pieces: list[np.ndarray] = []
    total = 0
    limit = int(max_seconds * sample_rate)
    try:
        for frame in container.decode(stream):
            if resampler is None:
                resampler = StreamResampler(frame.sample_rate, 1, sample_rate)
                mono_av = av.AudioResampler(format="flt", layout="mono", rate=frame.sample_rate)
            # Downmix with libswresample at the source rate, then resample with our stream resampler.
            for mono in mono_av.resample(frame):
                block = resampler.push(mono.to_ndarray().reshape(-1))
                pieces.append(block)
                total += block.size
            if total > limit:
                raise AudioFileError(f"{path.name} is longer than {max_seconds / 3600:.0f} h: "
                                     "split it into shorter files")
    except av.error.FFmpegError as exc:
        raise AudioFileError(f"{path.name} is corrupt ({_reason(exc)}): re-export it") from None
    except ValueError as exc:  # rate/channel checks
        raise AudioFileError(f"{path.name}: {exc}") from None
    if resampler is None or total == 0:
        raise AudioFileError(f"{path.name} contains no audio samples")
    pieces.append(resampler.flush())
    return np.concatenate(pieces).astype(np.float32, copy=False)


def _reason(exc: Exception) -> str:
    text = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
    return text[:120]
