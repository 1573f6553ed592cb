"""Turn a finished fragmented MP4 (crash-safe while recording) into a regular one.

A regular MP4 has one index up front (`faststart`), so every player seeks in it instantly; the
packets are copied, never re-encoded, so this takes a fraction of a second per minute. Timestamps
are copied as they are: the fragmented file already carries the edit list that trims the AAC
priming (avkit.mp4_writer), so the regular file plays audio and video exactly as it did.
"""
from __future__ import annotations

import os
from pathlib import Path

import av


def remux_to_regular_mp4(path: str | Path) -> bool:
    """Rewrite `path` in place; False when that failed and the (valid, fragmented) original stays."""
    path = Path(path)
    tmp = path.with_name(f"{path.stem}.remux-{os.getpid()}{path.suffix}")
    try:
        with av.open(str(path)) as src, av.open(str(tmp), mode="w", format="mp4",
                                               options={"movflags": "faststart"}) as dst:
            mapping = {s.index: dst.add_stream_from_template(s) for s in src.streams if s.type in ("video", "audio")}
            for packet in src.demux(*[s for s in src.streams if s.index in mapping]):
                if packet.dts is None:  # demuxer flush packets carry no data
                    continue
                packet.stream = mapping[packet.stream.index]
                dst.mux(packet)
        os.replace(tmp, path)
        return True
    except (av.FFmpegError, OSError):
        return False
    finally:
        tmp.unlink(missing_ok=True)
