"""`flashtalk render --pace realtime`: an audio file streamed as a microphone would, and measured.

The file is cut into blocks of LIVE_BLOCK_S; each is sent the moment a microphone would deliver
it (when its last sample has been "spoken"), stamped with the capture time of its first sample.
The session is a live one, so the engine's governor and skip rule act as they do for a person
talking. What comes back is logged per second: latency (capture -> the frame out of the engine,
here on the same clock), skipped seconds, the quality profile and the real-time factor.
"""
from __future__ import annotations

import math
import time
from collections.abc import Callable
from dataclasses import dataclass, field

import numpy as np

from avkit.timeline import Timeline
from engine.protocol.client import EngineClient
from engine.protocol.messages import Error, Event, Frames, Metrics, SessionOpened

LIVE_BLOCK_S = 0.04  # what a microphone hands over at a time (the studio's blocks are 20-40 ms)


class LivePaceError(RuntimeError):
    """The engine refused or failed the session; one line."""


@dataclass
class LivePaceLog:
    """What a live-paced render saw, on one clock (time.monotonic, shared with the in-process engine)."""

    opened: SessionOpened
    timeline: Timeline
    t0: float = 0.0  # the first block's capture time
    chunks: list[tuple[float, float, bool]] = field(default_factory=list)  # (received_at, latency_s, idle)
    metrics: list[tuple[float, dict]] = field(default_factory=list)  # (received_at, values)
    events: list[dict] = field(default_factory=list)  # profile switches, skips, warnings

    def on_frames(self, msg: Frames, now: float) -> None:
        self.chunks.append((now - self.t0, now - msg.capture_t0, msg.idle))

    def on_metrics(self, values: dict, now: float) -> None:
        self.metrics.append((now - self.t0, values))

    def on_event(self, msg: Event, now: float) -> None:
        if msg.kind in ("profile", "skip", "warning"):
            self.events.append({"t_s": round(now - self.t0, 3), "kind": msg.kind, "message": msg.message,
                                **msg.data})

    def report(self) -> dict:
        """Per-second series and the latency percentiles over the chunks of speech."""
        speech = [lat for _, lat, idle in self.chunks if not idle]
        last = self.metrics[-1][1] if self.metrics else {}
        seconds = math.ceil(max([t for t, _, _ in self.chunks] + [t for t, _ in self.metrics] + [0.0]))
        series, m = [], 0
        for second in range(seconds):
            while m < len(self.metrics) and self.metrics[m][0] < second + 1:
                m += 1
            values = self.metrics[m - 1][1] if m else {}
            here = [lat for t, lat, idle in self.chunks if second <= t < second + 1 and not idle]
            series.append({"t_s": second, "latency_s": max(here) if here else None,
                           "skipped_s": values.get("skipped_s", 0.0), "profile": values.get("profile"),
                           "rtf": values.get("rtf")})
        used = list(dict.fromkeys([self.opened.profile] + [e["profile"] for e in self.events
                                                           if e["kind"] == "profile"]))
        return {"pace": "realtime", "block_s": LIVE_BLOCK_S, "quality": self.opened.quality,
                "chunk_audio_s": self.opened.chunk_frames / self.timeline.fps,
                "target_latency_s": self.opened.target_latency_s, "profiles": self.opened.profiles,
                "start_profile": self.opened.profile, "predicted_rtf": self.opened.predicted_rtf,
                "profiles_used": used, "final_profile": last.get("profile", self.opened.profile),
                "latency_s": _percentiles(speech), "skipped_s": last.get("skipped_s", 0.0),
                "skips": last.get("skips", 0), "per_second": series, "events": self.events}


def live_summary(r: dict) -> str:
    """One line from a LivePaceLog report."""
    lat = r["latency_s"]
    text = (f"live pace: started at {r['start_profile']} (predicted {r['predicted_rtf']:.2f}x real time), "
            f"ended at {r['final_profile']}; ")
    if lat:
        text += f"latency p50 {lat['p50']:.2f} s, p95 {lat['p95']:.2f} s, max {lat['max']:.2f} s; "
    return text + f"skipped {r['skipped_s']:.1f} s in {r['skips']} skips"


def _percentiles(values: list[float]) -> dict:
    if not values:
        return {}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": float(p50), "p95": float(p95), "max": float(max(values)), "chunks": len(values)}


def stream_live(client: EngineClient, opened: SessionOpened, audio: np.ndarray, timeline: Timeline,
                on_frames: Callable[[Frames], None], on_warning: Callable[[str], None] | None = None) -> LivePaceLog:
    """Send `audio` at real-time pace, hand each Frames to `on_frames`, until the session ends."""
    rate = timeline.sample_rate
    block = int(LIVE_BLOCK_S * rate)
    log = LivePaceLog(opened, timeline, t0=time.monotonic())
    sent = 0
    while True:
        now = time.monotonic()
        while sent < audio.size and now >= log.t0 + min(sent + block, audio.size) / rate:
            client.send_audio(audio[sent:sent + block], rate, capture_t=log.t0 + sent / rate)
            sent += block
            if sent >= audio.size:
                client.end_audio()
        due = log.t0 + min(sent + block, audio.size) / rate - now if sent < audio.size else 0.2
        msg = client.recv(max(due, 0.0))
        now = time.monotonic()
        if isinstance(msg, Frames):
            log.on_frames(msg, now)
            on_frames(msg)
        elif isinstance(msg, Metrics):
            log.on_metrics(msg.values, now)
        elif isinstance(msg, Error):
            raise LivePaceError(msg.message)
        elif isinstance(msg, Event):
            if msg.kind == "session_ended":
                return log
            log.on_event(msg, now)
            if msg.kind == "warning" and on_warning is not None:
                on_warning(msg.message)
