"""The engine's one live session: open it, feed it audio, move its output to the owner, end it.

Runs on the server's thread, between socket reads. Finished chunks move from the session's outbox
to the socket without ever blocking: a slow client makes the outbox drop its oldest frames
(counted), never grows memory. The owner is one connection that said hello; when that connection
closes, goes silent for `client_timeout_s` or sends a refused hello, the session ends.
"""
from __future__ import annotations

import itertools
import secrets
import time

import numpy as np

from avkit.portrait_image import PortraitImageError, load_portrait
from avkit.timeline import Timeline
from engine.backends import backend_names
from engine.backends.base import Backend, SettingsError
from engine.protocol.messages import (
    Audio,
    CloseSession,
    EndOfAudio,
    Error,
    Event,
    Frames,
    Message,
    Metrics,
    OpenSession,
    SessionOpened,
    settings_from_dict,
)
from engine.server.config import ServerConfig
from engine.server.transport import Transport
from engine.session import LiveSession

SESSION_MESSAGES = (OpenSession, Audio, EndOfAudio, CloseSession)


class SessionLoop:
    def __init__(self, backend: Backend, timeline: Timeline, config: ServerConfig, transport: Transport):
        self.backend = backend
        self.timeline = timeline
        self.config = config
        self.transport = transport
        self.session: LiveSession | None = None
        self.owner: bytes | None = None
        self.opened = 0  # sessions started since the engine did
        self._announced = False
        self._ids = itertools.count(1)
        self._last_metrics = 0.0
        self._last_progress = 0.0

    # -- from the owner --------------------------------------------------------------------------
    def handle(self, ident: bytes, msg: Message) -> None:
        """One of SESSION_MESSAGES from a connection that said hello."""
        if isinstance(msg, OpenSession):
            self._open(ident, msg)
            return
        session = self.session
        if session is None or ident != self.owner or msg.session != session.id:
            self.transport.send(ident, Error(code="no_session", session=msg.session,
                                             message="no open session with that id: open a session first"))
        elif isinstance(msg, Audio):
            self._on_audio(ident, session, msg)
        elif isinstance(msg, EndOfAudio):
            session.end_audio()
        else:
            self.end(None)

    def owner_gone(self, ident: bytes) -> None:
        """A connection is gone (closed, evicted, refused hello): its session ends."""
        if ident == self.owner:
            self.end(None)

    def _open(self, ident: bytes, msg: OpenSession) -> None:
        if self.session is not None:
            self.transport.send(ident, Error(code="busy", message=(
                "the engine is busy with another live session: close it first or start another engine")))
            return
        try:
            settings = settings_from_dict(msg.settings)
            if settings.backend not in (None, self.backend.name):
                raise ValueError(self._not_our_backend(settings.backend))
            settings.backend = self.backend.name
            portrait = load_portrait(msg.portrait)
        except (ValueError, PortraitImageError) as exc:
            code = "bad_portrait" if isinstance(exc, PortraitImageError) else "bad_settings"
            self.transport.send(ident, Error(code=code, message=str(exc)))
            return
        sid = f"s{next(self._ids)}-{secrets.token_hex(4)}"
        try:  # checks what the backend can tell before any work: nothing has started when it fails
            self.session = LiveSession(sid, self.backend, portrait, settings, self.timeline, self.config.limits)
        except (ValueError, SettingsError) as exc:
            self.transport.send(ident, Error(code="bad_settings", message=str(exc)))
            return
        self.owner = ident
        self._announced = False
        self.opened += 1

    def _not_our_backend(self, name: str) -> str:
        if name in backend_names():
            return (f"this engine serves the {self.backend.name} backend, not {name}: restart it "
                    f"with --backend {name}")
        return f"unknown backend {name[:80]!r}: this engine serves the {self.backend.name} backend"

    def _on_audio(self, ident: bytes, session: LiveSession, msg: Audio) -> None:
        width = 4 * max(msg.channels, 1)
        if msg.channels < 1 or len(msg.pcm) % width:
            self.transport.send(ident, Error(code="bad_audio", session=session.id, message=(
                f"audio block of {len(msg.pcm)} bytes is not whole float32 frames of {msg.channels} channel(s)")))
            return
        try:
            session.push_audio(np.frombuffer(msg.pcm, np.float32), msg.sample_rate, msg.channels,
                               msg.capture_t)
        except (ValueError, OverflowError) as exc:
            self.transport.send(ident, Error(code="bad_audio", session=session.id, message=str(exc)))

    # -- to the owner ----------------------------------------------------------------------------
    def service(self) -> None:
        """Called once per server loop: announce, report progress, move output, end when done."""
        session, owner = self.session, self.owner
        if session is None or owner is None:
            return
        if not self._announced:
            if not session.ready.is_set():
                self._report_progress(session, owner)
                return
            self._announced = True
            self.transport.seen(owner)  # preparation time is not client silence
            if session.error is None:
                stream = session.stream
                governor = session.governor
                self.transport.send(owner, SessionOpened(
                    session=session.id, backend=self.backend.name, width=stream.width,
                    height=stream.height, fps=self.timeline.fps, sample_rate=self.timeline.sample_rate,
                    chunk_frames=stream.chunk_frames, prepare_ms=session.prepare_ms,
                    face_box=list(stream.face_box or ()), quality=session.quality.wire_name,
                    profile=governor.profile, profiles=list(governor.ladder),
                    predicted_rtf=governor.predicted_rtf(),
                    target_latency_s=session.contract.target_latency_s))
        if session.error is not None:
            self.transport.send(owner, Error(code=session.error.code, message=str(session.error),
                                             fatal=True, session=session.id))
            self.end(None)
            return
        self._flush_frames(session, owner)
        while session.events:
            kind, text, data = session.events.popleft()
            self.transport.send(owner, Event(kind=kind, message=text, data=data, session=session.id))
        now = time.monotonic()
        if now - self._last_metrics >= self.config.metrics_interval_s:
            self._last_metrics = now
            self._send_metrics(session, owner)
        last_seen = self.transport.last_seen(owner)
        if last_seen is None or now - last_seen > self.config.client_timeout_s:
            self.end("client went silent")
        elif session.finished.is_set() and session.outbox_frames() == 0:
            # The final metrics and the closing event must reach the client (a file render
            # reports the one and waits for the other): both are replies, queued if need be.
            self._send_metrics(session, owner, final=True)
            self.transport.send(owner, Event(kind="session_ended", session=session.id,
                                             message="all audio has been turned into video"))
            self.end(None)

    def _report_progress(self, session: LiveSession, owner: bytes) -> None:
        """While a session prepares (minutes for a big model on a CPU), say so every interval: the
        client waits on this sign of work, not on a fixed timeout."""
        now, interval = time.monotonic(), self.config.progress_interval_s
        elapsed = now - session.prepare_started
        if elapsed < interval or now - self._last_progress < interval:  # quick preparations stay quiet
            return
        self._last_progress = now
        stage = session.prepare_stage
        self.transport.send(owner, Event(
            kind="progress", session=session.id,
            message=f"preparing the session: {stage.replace('_', ' ')} ({elapsed:.0f} s)",
            data={"stage": stage, "elapsed_s": round(elapsed, 1)}))

    def _flush_frames(self, session: LiveSession, owner: bytes) -> None:
        spf = self.timeline.samples_per_frame
        while (out := session.pop_chunk()) is not None:
            frames = np.ascontiguousarray(out.frames)  # [N, H, W, 3] uint8
            msg = Frames(session=session.id, chunk=out.chunk, first_frame=out.first_frame,
                         count=len(frames), width=frames.shape[2], height=frames.shape[1],
                         capture_t0=out.capture_t0, idle=out.idle, timings=out.timings,
                         rgb=memoryview(frames).cast("B"),
                         audio=np.ascontiguousarray(out.audio[: len(frames) * spf]).tobytes())
            if not self.transport.send_droppable(owner, msg):
                session.unpop_chunk(out)
                break
            session.chunk_sent(out, time.monotonic())

    def _send_metrics(self, session: LiveSession, owner: bytes, final: bool = False) -> None:
        """The session's figures, and the engine's: messages refused as malformed, connections
        refused without the token, and replies dropped because their client did not read them."""
        values = session.stats.as_dict(self.timeline)
        values.update(session.live_metrics())
        values.update(outbox_frames=session.outbox_frames(),
                      backlog_s=session.backlog_samples() / self.timeline.sample_rate,
                      **self.transport.counters)
        msg = Metrics(session=session.id, values=values)
        if final:
            self.transport.send(owner, msg)
        else:
            self.transport.send_droppable(owner, msg)

    def end(self, reason: str | None, wait: float | None = 5.0) -> None:
        """End the session; with a reason, tell its owner why. wait=None: until its worker is out
        of the backend (at shutdown, before the backend is closed under it)."""
        session, owner = self.session, self.owner
        self.session, self.owner = None, None
        if session is None:
            return
        session.close(wait)
        if reason and owner is not None:
            self.transport.send(owner, Event(kind="session_ended", session=session.id, message=reason))
