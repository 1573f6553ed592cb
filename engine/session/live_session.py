"""One avatar session: audio in, chunks scheduled on one timeline, frames out.

The server thread pushes audio and reads the outbox; a worker thread prepares the backend stream
and runs one chunk at a time, so socket I/O never waits for the GPU. Frame k presents samples
[k*spf, (k+1)*spf): every chunk is cut from that single timeline, whatever the block sizes, rates
or gaps of the incoming audio.

A backend's first chunk may be shorter than the others (`AvatarStream.next_chunk_frames`): its
frames come sooner, and the timeline goes on from its end, so frame k still presents samples
[k*spf, (k+1)*spf).

Live sessions keep a latency contract (latency_contract.py): a governor (governor.py) picks the
quality profile that keeps up, from chunk times measured when the session opens and re-checked
after every chunk, and audio that has waited longer than the target allows is skipped, counted,
at a chunk boundary. File sessions make every frame at the quality asked for.
"""
from __future__ import annotations

import threading
import time
import traceback
from collections import deque
from dataclasses import dataclass, field
from enum import Enum

import numpy as np

from avkit.resample import StreamResampler
from avkit.timeline import Timeline
from engine.backends.base import AvatarStream, Backend, BackendError, OutOfMemory, StreamPlan
from engine.protocol.messages import MAX_FRAMES_BYTES, SessionSettings, frames_per_message
from engine.protocol.stages import Stage
from engine.session.audio_ring import AudioRing
from engine.session.chunk_audio import chunk_end, context_window, shown_audio
from engine.session.governor import Governor, Switch, chunk_audio_seconds, resolve_quality
from engine.session.latency_contract import LatencyContract


class SessionState(Enum):
    PREPARING = "preparing"  # the backend opens its stream (portrait, encoders)
    RUNNING = "running"  # chunks are made as audio comes (or idle ones in silence)
    DRAINING = "draining"  # the client ended its audio: what is left becomes the last chunks
    ENDED = "ended"  # no more chunks (done, closed, or failed: see `error`)


@dataclass
class SessionLimits:
    """Bounds that keep a session's memory flat whatever the client does."""

    outbox_frames: int = 100  # frames waiting for the socket; oldest dropped beyond this
    file_backlog_s: float = 120.0  # file mode: client must not send further ahead than this
    idle_gap_s: float = 0.5  # live mode: silence this long -> generate idle chunks


@dataclass
class ChunkOut:
    """A finished chunk waiting in the outbox (turned into a Frames message by the server)."""

    chunk: int
    first_frame: int
    frames: np.ndarray  # [N, H, W, 3] uint8
    audio: np.ndarray  # [N * spf] float32: the samples these frames present
    capture_t0: float
    heard_t0: float  # when the engine heard the first of those samples (engine clock: latency_s)
    idle: bool
    timings: dict = field(default_factory=dict)


@dataclass
class SessionStats:
    chunks: int = 0
    frames: int = 0
    dropped_frames: int = 0  # generated but dropped because the client read too slowly
    skipped_frames: int = 0  # live audio skipped because the engine fell behind
    skips: int = 0  # times it skipped
    idle_chunks: int = 0
    profile_switches: int = 0
    latency_s: float = 0.0  # heard -> sent of the last chunk of speech that left the engine

    def as_dict(self, timeline: Timeline) -> dict:
        return {"chunks": self.chunks, "frames": self.frames, "dropped_frames": self.dropped_frames,
                "skipped_frames": self.skipped_frames, "skipped_s": self.skipped_frames / timeline.fps,
                "skips": self.skips, "idle_chunks": self.idle_chunks,
                "profile_switches": self.profile_switches, "latency_s": self.latency_s}


def _check_chunk_fits_a_message(plan: StreamPlan, timeline: Timeline) -> None:
    """A chunk leaves as one Frames message, which no client takes beyond MAX_FRAMES_BYTES."""
    top = plan.profiles[0]  # every profile's frames have the top one's size
    fit = frames_per_message(top.width, top.height, timeline.samples_per_frame)
    if plan.chunk_frames > fit:
        mib = plan.chunk_frames * top.width * top.height * 3 / 2**20
        raise ValueError(f"chunk_frames {plan.chunk_frames} at {top.width}x{top.height} makes {mib:.0f} MiB of "
                         f"frames per chunk, over the {MAX_FRAMES_BYTES // 2**20} MiB a frames message may "
                         f"carry: use at most {fit} chunk_frames at this size, or a smaller size")


class _Closing(Exception):
    """Raised from the backend's stage callback once the session is closing: the worker stops
    between two stages instead of finishing a chunk (or a preparation) nobody will see."""


class LiveSession:
    """`state`: preparing -> running -> (draining) -> ended (SessionState). Thread-safe for the server thread.

    The constructor checks what the backend can tell before any work (sizes, chunk length, the
    quality asked for, the target latency): ValueError or SettingsError, one line, and nothing
    has started.
    """

    def __init__(self, session_id: str, backend: Backend, portrait: np.ndarray,
                 settings: SessionSettings, timeline: Timeline = Timeline(),
                 limits: SessionLimits = SessionLimits()):
        self.id = session_id
        self.settings = settings
        self.timeline = timeline
        self.limits = limits
        self.plan = backend.plan(settings)
        _check_chunk_fits_a_message(self.plan, timeline)
        self.quality = resolve_quality(settings, self.plan)
        chunk_s = chunk_audio_seconds(self.plan, timeline)
        self.contract = LatencyContract.for_session(settings, chunk_s)
        self.governor = Governor([p.name for p in self.plan.profiles], chunk_s, fixed=self.quality.fixed)
        self.stats = SessionStats()
        self.stream: AvatarStream | None = None
        self.error: BackendError | None = None
        self.prepare_ms = 0.0  # measuring the profiles and preparing the stream
        self.events: deque[tuple[str, str, dict]] = deque(maxlen=64)  # (kind, message, data) for the server
        self._backend, self._portrait = backend, portrait
        self._cond = threading.Condition()
        self._ring = AudioRing(capacity=int(timeline.sample_rate * (limits.file_backlog_s + 10)),
                               sample_rate=timeline.sample_rate)
        self._resamplers: dict[tuple[int, int], StreamResampler] = {}
        self._outbox: deque[ChunkOut] = deque()
        self._outbox_count = 0
        self.state = SessionState.PREPARING
        self._closing = False
        self.ready = threading.Event()
        self.finished = threading.Event()
        self._last_audio_wall = time.monotonic()
        self.prepare_started = time.monotonic()
        self.prepare_stage = "starting"  # the backend's preparation stage under way (progress)
        self._next_idle_at = 0.0
        self._next_frame = 0
        self._thread = threading.Thread(target=self._run, name=f"session-{session_id}", daemon=True)
        self._thread.start()

    # -- called from the server thread -----------------------------------------------------------
    def push_audio(self, pcm: np.ndarray, sample_rate: int, channels: int, capture_t: float) -> None:
        key = (sample_rate, channels)
        held: list[np.ndarray] = []
        if key not in self._resamplers:  # a new input format: what the old one still holds comes first
            held = [r.flush() for r in self._resamplers.values()]
            self._resamplers = {key: StreamResampler(sample_rate, channels, self.timeline.sample_rate)}
        mono = self._resamplers[key].push(pcm)
        if held:
            mono = np.concatenate([*held, mono])
        with self._cond:
            if self.state in (SessionState.DRAINING, SessionState.ENDED) or self._closing:
                return
            limit = self.limits.file_backlog_s * self.timeline.sample_rate
            if self.backlog_samples() + mono.size > limit:
                raise OverflowError(f"audio sent more than {self.limits.file_backlog_s:.0f} s ahead of "
                                    "the video; send audio no faster than frames come back")
            self._ring.append(mono, capture_t)
            self._last_audio_wall = time.monotonic()
            self._cond.notify_all()

    def end_audio(self) -> None:
        with self._cond:
            for res in self._resamplers.values():
                self._ring.append(res.flush())
            if self.state in (SessionState.PREPARING, SessionState.RUNNING):
                self.state = SessionState.DRAINING
            self._cond.notify_all()

    def close(self, wait: float | None = 5.0) -> None:
        """Stop the worker at its next stage boundary; wait=None waits for it whatever it takes."""
        with self._cond:
            self._closing = True
            self._cond.notify_all()
        self._thread.join(wait)

    def backlog_samples(self) -> int:
        """Audio received but not yet shown; 0 once the zero-padded last frame is done."""
        return max(0, self._ring.total - self._next_frame * self.timeline.samples_per_frame)

    def pop_chunk(self) -> ChunkOut | None:
        with self._cond:
            if not self._outbox:
                return None
            out = self._outbox.popleft()
            self._outbox_count -= len(out.frames)
            self._cond.notify_all()
            return out

    def unpop_chunk(self, out: ChunkOut) -> None:
        """Put back a chunk the socket could not take yet (it stays first in line)."""
        with self._cond:
            self._outbox.appendleft(out)
            self._outbox_count += len(out.frames)
            self._trim_outbox()

    def outbox_frames(self) -> int:
        return self._outbox_count

    def chunk_sent(self, out: ChunkOut, now: float) -> None:
        """The server sent a chunk: its latency (engine clock) is the recent one."""
        if not out.idle:
            self.stats.latency_s = now - out.heard_t0

    def live_metrics(self) -> dict:
        """The governor's side of the metrics: profile in force and measured (recent) rtf."""
        with self._cond:  # the worker feeds the governor under the same lock
            return {"profile": self.governor.profile if self.stream is not None else "",
                    "rtf": self.governor.rtf}

    # -- worker thread ---------------------------------------------------------------------------
    def _run(self) -> None:
        try:
            t0 = time.perf_counter()
            start = self._choose_profile()
            t1 = time.perf_counter()
            self.stream = self._backend.open_stream(self._portrait, self.settings,
                                                    on_stage=self._on_stage, profile=start)
            self.stream.prepare_ms = self.stream.prepare_ms or (time.perf_counter() - t1) * 1e3
            self.prepare_ms = (t1 - t0) * 1e3 + self.stream.prepare_ms
            self._portrait = None
            self._last_audio_wall = time.monotonic()
            self._say_if_too_slow()
            with self._cond:
                if self.state is SessionState.PREPARING:  # not DRAINING: the audio may have ended already
                    self.state = SessionState.RUNNING
            self.ready.set()
            while self._step():
                pass
        except _Closing:
            pass
        except BackendError as exc:
            self.error = exc
        except MemoryError as exc:  # any backend (flashtalk reports its own, with what to change)
            traceback.clear_frames(exc.__traceback__)  # free what the failed chunk held, now
            self.error = OutOfMemory("the engine ran out of memory: lower the session's resolution "
                                     "(width and height) or free memory on the engine's machine")
        except Exception as exc:  # noqa: BLE001 - report, never take the engine down
            self.error = BackendError(f"internal error in the {self.settings.backend} backend: "
                                      f"{type(exc).__name__}: {exc}".splitlines()[0])
            traceback.print_exc()
        finally:
            if self.stream is not None:
                self.stream.close()
            with self._cond:
                self.state = SessionState.ENDED
            self.ready.set()
            self.finished.set()

    def _on_stage(self, name: str) -> None:
        if self._closing:
            raise _Closing
        if not self.ready.is_set():
            self.prepare_stage = name  # one str assignment: read by the server thread without a lock

    def _choose_profile(self) -> str:
        """What the engine measured before comes first; a live session measures what is missing to
        choose (auto: a few profiles; fixed: that one), a file session nothing."""
        governor = self.governor
        governor.learn(self._backend.known_chunk_seconds(self.settings))
        if self.settings.mode == "live":
            for _ in self.plan.profiles:  # each round measures one profile more: bounded
                name = governor.next_to_measure()
                if name is None or self._closing:
                    break
                self._on_stage(Stage.MEASURING_SPEED)
                governor.learn(self._backend.measure_profile(self._portrait, self.settings, name))
                if not governor.known(name):
                    break  # the backend could not time it: choose from what is known
        return governor.start()

    def _say_if_too_slow(self) -> None:
        rtf = self.governor.predicted_rtf()
        if self.settings.mode == "live" and 0 < rtf < 1.0:
            lowest = "even at its lowest quality " if self.governor.auto else ""
            self.events.append(("warning", f"this engine makes {rtf:.2f} s of video per second {lowest}"
                                           f"({self.governor.profile}): live lag will be skipped",
                                {"predicted_rtf": rtf, "profile": self.governor.profile}))

    def _step(self) -> bool:
        """Wait for the next chunk's audio (or idle/end), generate it. False when done."""
        assert self.stream is not None
        n = self.stream.next_chunk_frames  # the first chunk may be shorter: its frames come sooner
        with self._cond:
            while True:
                if self._closing:
                    return False
                if self._outbox_full(n):  # file mode: wait for the client, never drop frames
                    self._cond.wait(0.02)
                    continue
                self._skip_if_behind(n)
                end = chunk_end(self._next_frame, n, self.timeline)
                if self._ring.total >= end:
                    idle, count = False, n
                    break
                if self.state is SessionState.DRAINING:
                    count = self.timeline.frames_covering(self._ring.total) - self._next_frame
                    if count <= 0:
                        return False
                    idle = False
                    break
                if self._idle_due():
                    # The client paused: the chunk is finished with silence. Audio it already
                    # holds is speech and is shown as such (a long chunk is rarely filled without
                    # a pause); only a chunk that received nothing is an idle one.
                    idle = self._ring.total <= self.timeline.frame_start_sample(self._next_frame)
                    self._ring.append(np.zeros(end - self._ring.total, np.float32))
                    self._schedule_next_idle(n)
                    count = n
                    break
                self._cond.wait(0.02)
            first = self._next_frame
            audio_in = context_window(self._ring, first, n, self.stream.context_samples, self.timeline)
            shown = shown_audio(self._ring, first, count, self.timeline)
            capture_t0 = self._ring.capture_time(self.timeline.frame_start_sample(first))
            heard_t0 = self._ring.heard_time(self.timeline.frame_start_sample(first))
        t0 = time.perf_counter()
        result = self.stream.generate(audio_in, idle=idle)
        elapsed = time.perf_counter() - t0
        frames = result.frames[:count]
        timings = dict(result.timings)
        timings[Stage.CHUNK_TOTAL] = elapsed * 1e3
        with self._cond:
            self._next_frame = first + n
            self.stats.chunks += 1
            self.stats.frames += len(frames)
            self.stats.idle_chunks += int(idle)
            self._outbox.append(ChunkOut(self.stats.chunks - 1, first, frames, shown, capture_t0,
                                         heard_t0, idle, timings))
            self._outbox_count += len(frames)
            self._trim_outbox()
            more = count == n or self.state is not SessionState.DRAINING
            # A chunk of another length (a short first one) tells nothing about a regular chunk's time.
            switch = self.governor.observe(elapsed) if n == self.stream.chunk_frames else None
        if switch is not None and more:
            self._switch(switch)
        return more

    def _switch(self, switch: Switch) -> None:
        """Between two chunks: the next one is made at the governor's new profile."""
        t0 = time.perf_counter()
        self.stream.use_profile(switch.profile)
        took = time.perf_counter() - t0
        self.stats.profile_switches += 1
        self.events.append(("profile", f"quality {switch.direction} to {switch.profile} (was {switch.previous}, "
                                       f"measured {switch.measured_rtf:.2f}x real time)",
                            {"profile": switch.profile, "previous": switch.previous, "direction": switch.direction,
                             "measured_rtf": switch.measured_rtf, "predicted_rtf": switch.predicted_rtf,
                             "switch_s": took}))

    def _idle_due(self) -> bool:
        if self.settings.mode != "live":
            return False
        now = time.monotonic()
        return now - self._last_audio_wall >= self.limits.idle_gap_s and now >= self._next_idle_at

    def _schedule_next_idle(self, frames: int) -> None:
        """Idle chunks are paced at real time on a fixed grid, so they neither drift nor burst."""
        chunk_s = frames / self.timeline.fps
        now = time.monotonic()
        due = self._next_idle_at + chunk_s
        self._next_idle_at = due if now - due < chunk_s else now + chunk_s

    def _skip_if_behind(self, n: int) -> None:
        """Live mode only: when the next chunk's audio has waited longer than the latency contract
        allows, jump to the newest whole chunk (a frame boundary) and count what was skipped."""
        if self.settings.mode != "live":
            return
        spf = self.timeline.samples_per_frame
        newest = self._ring.total // spf - n
        if newest <= self._next_frame:
            return
        age = time.monotonic() - self._ring.heard_time(self._next_frame * spf)
        start = self.contract.chunk_start(self._next_frame, newest, age, self.governor.expected_chunk_s())
        if start == self._next_frame:
            return
        skip = start - self._next_frame
        self._next_frame = start
        self.stats.skipped_frames += skip
        self.stats.skips += 1
        fps = self.timeline.fps
        self.events.append(("skip", f"the engine fell behind live audio: skipped {skip / fps:.2f} s",
                            {"skipped_s": skip / fps, "first_frame": start,
                             "total_skipped_s": self.stats.skipped_frames / fps}))

    def _outbox_full(self, n: int) -> bool:
        """File mode only: another chunk would overflow the outbox (one chunk always fits)."""
        return (self.settings.mode == "file" and self._outbox_count > 0
                and self._outbox_count + n > self.limits.outbox_frames)

    def _trim_outbox(self) -> None:
        """Live mode: a slow client loses the oldest frames (counted), latency stays bounded.
        File mode never drops: generation waits for the client instead (_outbox_full)."""
        if self.settings.mode == "file":
            return
        while self._outbox_count > self.limits.outbox_frames and len(self._outbox) > 1:
            old = self._outbox.popleft()
            self._outbox_count -= len(old.frames)
            self.stats.dropped_frames += len(old.frames)
