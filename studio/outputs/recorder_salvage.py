"""Keep what a recording holds when writing it failed (the disk filled up).

The recorder writes a fragmented MP4: `ftyp`, `moov` (empty index), then one `moof` + `mdat` pair
per second. A write that failed leaves at most one pair cut short. Truncating the file after the
last whole pair needs no free space and leaves a file every player opens, holding everything up
to that second.
"""
from __future__ import annotations

import struct
from pathlib import Path

import av

from avkit.timeline import FPS


def cut_after_last_fragment(path: str | Path) -> bool:
    """Truncate `path` after its last whole moof+mdat pair; False when it has none (nothing kept)."""
    path = Path(path)
    size = path.stat().st_size
    pos, keep, has_index, moof_pending = 0, 0, False, False
    with open(path, "r+b") as fh:
        while pos + 8 <= size:
            fh.seek(pos)
            header = fh.read(16)
            box_size, kind = struct.unpack(">I4s", header[:8])
            head = 8
            if box_size == 1:  # 64-bit size follows the type
                if len(header) < 16:
                    break
                box_size, head = struct.unpack(">Q", header[8:16])[0], 16
            if box_size < head or pos + box_size > size:  # size 0 ("to the end") or cut short
                break
            if kind == b"moov":
                has_index = True
            elif kind == b"moof":
                moof_pending = True
            elif kind == b"mdat" and moof_pending:
                keep, moof_pending = pos + box_size, False
            pos += box_size
        if not has_index or keep == 0:
            return False
        fh.truncate(keep)
    return True


def video_seconds(path: str | Path) -> float:
    """Length of the video track from its packets (no decoding: fast even for hours); 0 if unreadable."""
    try:
        with av.open(str(path)) as container:
            stream = container.streams.video[0]
            packets = sum(1 for p in container.demux(stream) if p.size)
            rate = float(stream.average_rate or stream.guessed_rate or FPS)
    except (av.FFmpegError, OSError, ValueError, IndexError):
        return 0.0
    return packets / rate
