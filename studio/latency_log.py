"""The studio's side of a session, measured for scripts: `flashtalk-studio --metrics-json FILE`.

Every presented frame's latency (capture -> presented) and, once a second, what the session stood
at: skipped seconds, quality profile, real-time factor, and the CPU the UI thread used in that
second. At exit it becomes one JSON document: the per-second series plus p50/p95/max over the frames
made from captured audio (frames the engine made in silence have no capture time to be late to),
over the whole session and after the first WARMUP_S.

Qt-free and bounded: one float per frame shown and one row per second.
"""
from __future__ import annotations

import json
import math
import os
from array import array
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from studio.session_stats import SessionStats

WARMUP_S = 5.0  # the contract is judged after this much of the session


@dataclass
class _Second:
    latencies: list[float]
    idle_frames: int = 0


class LatencyLog:
    def __init__(self, t0: float, ui_cpu0: float, pace: str):
        self.t0 = t0  # the first session's opening
        self.pace = pace
        self._times = array("d")  # presented frames made from captured audio: seconds since t0
        self._latencies = array("d")
        self._idle_frames = 0
        self._rows: list[dict] = []
        self._second = _Second([])
        self._ui_cpu_last = self._ui_cpu0 = ui_cpu0
        self._facts: dict = {}
        self._profiles: list[str] = []

    def on_session(self, facts: dict) -> None:
        """An engine session opened: live or not, its target, the engine's facts (the last session's are
        kept; what an engine did not say is null)."""
        self._facts = {key: None if _unsaid(value) else value for key, value in facts.items()}
        self._note_profile(facts.get("profile") or "")

    def on_frame(self, now: float, latency_s: float, idle: bool) -> None:
        if idle:
            self._second.idle_frames += 1
            self._idle_frames += 1
            return
        self._times.append(now - self.t0)
        self._latencies.append(latency_s)
        self._second.latencies.append(latency_s)

    def on_second(self, now: float, stats: SessionStats, ui_cpu: float, ui_stall_ms: float = math.nan) -> None:
        """Close the second that ends now (the caller ticks once a second, on the UI thread).
        ui_stall_ms: the UI thread's longest stall in it (the OS not running the studio, or work
        that blocked it): a frame shown late by it is late by that much whatever the playout does."""
        lat = self._second.latencies
        self._note_profile(stats.profile)
        self._rows.append({
            "t_s": round(now - self.t0, 3), "frames": len(lat), "idle_frames": self._second.idle_frames,
            "latency_max_s": _round(max(lat)) if lat else None,
            "latency_p50_s": _round(float(np.median(lat))) if lat else None,
            "skipped_s": _round(stats.skipped_s), "engine_skipped_s": _round(stats.engine_skipped_s),
            "playout_skipped_s": _round(stats.playout_skipped_s), "profile": stats.profile or None,
            "rtf": _round(stats.rtf), "ui_thread_cpu_s": _round(ui_cpu - self._ui_cpu_last),
            "ui_stall_max_s": _round(ui_stall_ms / 1e3)})
        self._ui_cpu_last = ui_cpu
        self._second = _Second([])

    def _note_profile(self, profile: str) -> None:
        if profile and profile not in self._profiles:
            self._profiles.append(profile)

    def report(self, now: float, stats: SessionStats, ui_cpu: float, schedule_counts: dict) -> dict:
        seconds = max(now - self.t0, 1e-9)
        times, lat = np.frombuffer(self._times), np.frombuffer(self._latencies)
        return {
            "pace": self.pace, **self._facts,
            "seconds": round(seconds, 3), "warmup_s": WARMUP_S,
            "latency_s": _percentiles(lat), "latency_after_warmup_s": _percentiles(lat[times >= WARMUP_S]),
            "idle_frames": self._idle_frames, "profiles_used": self._profiles,
            "skipped_s": _round(stats.skipped_s), "engine_skipped_s": _round(stats.engine_skipped_s),
            "playout_skipped_s": _round(stats.playout_skipped_s), "underruns": stats.underruns,
            "dropped_frames": stats.dropped, **schedule_counts,
            "rtf": _round(stats.rtf), "ui_thread_cpu_per_s": _round((ui_cpu - self._ui_cpu0) / seconds),
            "per_second": self._rows,
        }

    def write(self, path: Path, report: dict) -> None:
        """Whole or not at all: written beside the target, then renamed over it."""
        path = Path(path)
        tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
        tmp.write_text(json.dumps(report, indent=1) + "\n")
        tmp.replace(path)


def _unsaid(value) -> bool:
    """"", 0.0 or []: what an engine from before the latency contract reports."""
    return not isinstance(value, bool) and value in ("", 0.0, [])


def _round(value: float | None, digits: int = 4) -> float | None:
    if value is None or not math.isfinite(value):
        return None
    return round(float(value), digits)


def _percentiles(values: np.ndarray) -> dict:
    if not len(values):
        return {"frames": 0}
    p50, p95 = np.percentile(values, [50, 95])
    return {"p50": _round(p50), "p95": _round(p95), "max": _round(values.max()), "frames": int(len(values))}
