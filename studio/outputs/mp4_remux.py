"""Turn a finished fragmented MP4 (crash-safe while recording) into a regular one.

A regular MP4 has one index up front (`faststart`), so every player seeks in it instantly; the
packets are copied, never re-encoded, so this takes a fraction of a second per minute. A fragmented
MP4 plays the AAC encoder's priming samples as audio (64 ms late at 16 kHz); moving the audio's
first packet to -priming gives the regular file the edit list that trims them again.
"""
from __future__ import annotations

import os
from pathlib import Path

import av

AAC_PRIMING = 1024  # samples the AAC encoder puts before the audio; fragmented MP4s lose their edit list


def remux_to_regular_mp4(path: str | Path) -> bool:
    """Rewrite `path` in place; False when that failed and the (valid, fragmented) original stays."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.remux-{os.getpid()}{path.suffix}")
    try:
        with av.open(str(path)) as src, av.open(str(tmp), mode="w", format="mp4",
                                               options={"movflags": "faststart"}) as dst:
            mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
            shift: dict[int, int] = {}
            for packet in src.demux(*[s for s in src.streams if s.index in mapping]):
                if packet.dts is None:  # demuxer flush packets carry no data
                    continue
                if packet.stream.index not in shift:  # decided on each stream's first packet
                    shift[packet.stream.index] = _priming_shift(packet.stream, packet.pts)
                if shift[packet.stream.index]:
                    packet.pts -= shift[packet.stream.index]
                    packet.dts -= shift[packet.stream.index]
                packet.stream = mapping[packet.stream.index]
                dst.mux(packet)
        os.replace(tmp, path)
        return True
    except (av.FFmpegError, OSError):
        return False
    finally:
        tmp.unlink(missing_ok=True)


def _priming_shift(stream, first_pts: int | None) -> int:
    """AAC priming in the stream's time base when no edit list trims it (first packet at >= 0), else 0."""
    if stream.type != "audio" or stream.codec_context.name != "aac" or first_pts is None or first_pts < 0:
        return 0
    return round(AAC_PRIMING / stream.codec_context.sample_rate / stream.time_base)
