"""The engine's socket server: auth, one live session at a time, backpressure, metrics.

A single thread owns the ROUTER socket. It decodes and checks every message, hands audio to the
session, and moves finished chunks from the session's outbox to the socket without ever blocking:
a slow client makes the outbox drop its oldest frames (counted), never grows memory.
Replies (errors, events, acks) never get lost behind frames: when a peer's send queue is full
they wait in that peer's small control queue and go out, in order, before any further frames.
"""
from __future__ import annotations

import hmac
import ipaddress
import itertools
import os
import secrets
import sys
import threading
import time
from collections import OrderedDict, deque
from concurrent.futures import Future, ThreadPoolExecutor
from dataclasses import dataclass, field

import numpy as np
import zmq

from avkit.portrait_image import PortraitImageError, load_portrait
from avkit.timeline import Timeline
from engine.backends import DEFAULT_BACKEND, create_backend
from engine.backends.base import Backend, BackendError, BackendOptions
from engine.protocol.address import ipc_path, make_private_dir, token_path, write_token
from engine.protocol.backend_names import BackendName
from engine.protocol.codec import ProtocolError, decode, encode
from engine.protocol.messages import (
    MAX_INBOUND_MESSAGE_BYTES,
    PROTOCOL_VERSION,
    Audio,
    CheckPortrait,
    CloseSession,
    EndOfAudio,
    Error,
    Event,
    Frames,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    Metrics,
    OpenSession,
    PortraitChecked,
    SessionOpened,
    Welcome,
    settings_from_dict,
)
from engine.session import LiveSession, SessionLimits


@dataclass
class ServerConfig:
    address: str
    backend: str = DEFAULT_BACKEND
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    client_timeout_s: float = 10.0  # a session's client silent this long is gone
    metrics_interval_s: float = 0.5
    max_clients: int = 64  # remembered peers; the least recently seen is forgotten first
    max_pending_replies: int = 256  # per peer; a peer that never reads loses its oldest replies
    allow_remote: bool = False  # tcp on a non-loopback interface
    limits: SessionLimits = field(default_factory=SessionLimits)
    progress_interval_s: float = 1.0  # a session being prepared reports its stage this often
    max_pending_checks: int = 4  # portrait checks waiting for the checker thread; more are refused as busy


class EngineServerError(RuntimeError):
    """Cannot start serving; one line."""


@dataclass
class _Peer:
    authenticated: bool = False
    last_seen: float = field(default_factory=time.monotonic)
    pending: deque = field(default_factory=deque)  # encoded replies the socket could not take yet


class EngineServer:
    def __init__(self, config: ServerConfig, backend: Backend | None = None,
                 context: zmq.Context | None = None):
        self.config = config
        self.timeline = Timeline()
        self.backend = backend or create_backend(config.backend, config.backend_options)
        self.counters = {"malformed": 0, "unauthenticated": 0, "sessions": 0, "replies_dropped": 0}
        self._ctx = context or zmq.Context.instance()
        self._sock: zmq.Socket | None = None
        self._token = ""
        self._peers: OrderedDict[bytes, _Peer] = OrderedDict()
        self._session: LiveSession | None = None
        self._owner: bytes | None = None
        self._announced = False
        self._ids = itertools.count(1)
        self._seq = itertools.count(1)
        self._last_metrics = 0.0
        self._last_progress = 0.0
        self._checker = ThreadPoolExecutor(max_workers=1, thread_name_prefix="portrait-check")
        self._checks: list[tuple[bytes, int, Future]] = []  # (peer, request, answer) in order
        self.stop_event = threading.Event()

    # -- lifecycle -------------------------------------------------------------------------------
    def bind(self) -> str:
        address = self.config.address
        self._check_address(address)
        sock = self._ctx.socket(zmq.ROUTER)
        sock.setsockopt(zmq.LINGER, 0)
        sock.setsockopt(zmq.ROUTER_MANDATORY, 1)
        sock.setsockopt(zmq.SNDHWM, 4)
        sock.setsockopt(zmq.RCVHWM, 1000)
        sock.setsockopt(zmq.MAXMSGSIZE, MAX_INBOUND_MESSAGE_BYTES)
        path = ipc_path(address)
        if path is not None:
            make_private_dir(path.parent)
            self._remove_stale_socket(path)
        old_umask = os.umask(0o177)
        try:
            sock.bind(address)
        except zmq.ZMQError as exc:
            sock.close(0)
            raise EngineServerError(f"cannot listen on {address}: {exc}") from None
        finally:
            os.umask(old_umask)
        self._token, _ = write_token(address)
        self._sock = sock
        return address

    def serve_forever(self) -> None:
        assert self._sock is not None, "bind() first"
        poller = zmq.Poller()
        poller.register(self._sock, zmq.POLLIN)
        while not self.stop_event.is_set():
            events = dict(poller.poll(5))
            if self._sock in events:
                for _ in range(64):  # drain a burst, then service the session
                    try:
                        parts = self._sock.recv_multipart(zmq.NOBLOCK, copy=True)
                    except zmq.Again:
                        break
                    self._on_parts(parts)
            self._flush_replies()
            self._answer_checks()
            self._service_session()
        self.shutdown()

    def shutdown(self) -> None:
        if self._session is not None:  # the worker must be out of the backend before it is closed
            self._end_session("engine shutting down", wait=None)
        self._checker.shutdown(wait=True, cancel_futures=True)  # out of the backend before it is closed
        if self._sock is not None:
            self._sock.close(0)
            self._sock = None
            path = ipc_path(self.config.address)
            if path is not None:
                path.unlink(missing_ok=True)
            token_path(self.config.address).unlink(missing_ok=True)
        self.backend.close()

    # -- inbound ---------------------------------------------------------------------------------
    def _on_parts(self, parts: list[bytes]) -> None:
        if len(parts) < 2:
            self.counters["malformed"] += 1
            return
        ident, body = parts[0], parts[1:]
        peer = self._peer(ident)
        try:
            msg = decode(body)
        except ProtocolError as exc:
            self.counters["malformed"] += 1
            self._send(ident, Error(code="protocol", message=str(exc)))
            return
        if isinstance(msg, Hello):
            self._on_hello(ident, peer, msg)
        elif not peer.authenticated:
            self.counters["unauthenticated"] += 1
            self._send(ident, Error(code="auth", message="send hello with the engine's token first"))
        else:
            self._dispatch(ident, msg)

    def _peer(self, ident: bytes) -> _Peer:
        peer = self._peers.pop(ident, None) or _Peer()
        peer.last_seen = time.monotonic()
        self._peers[ident] = peer
        while len(self._peers) > self.config.max_clients:
            old = next(iter(self._peers))
            if old == self._owner:
                self._peers.move_to_end(old)
                continue
            self._peers.popitem(last=False)
        return peer

    def _on_hello(self, ident: bytes, peer: _Peer, msg: Hello) -> None:
        if msg.version != PROTOCOL_VERSION:
            self._send(ident, Error(code="version", fatal=True, message=(
                f"protocol version {msg.version} is not supported by this engine (it speaks "
                f"{PROTOCOL_VERSION}): update the studio and the engine to the same release")))
            return
        if not hmac.compare_digest(msg.token.encode(), self._token.encode()):
            self.counters["unauthenticated"] += 1
            self._send(ident, Error(code="auth", fatal=True, message=(
                f"wrong or missing token: read it from {token_path(self.config.address)}")))
            return
        peer.authenticated = True
        self._send(ident, Welcome(engine=f"flashtalk-engine/{os.getpid()}",
                                  backends=[self.backend.name], default_backend=self.backend.name,
                                  sample_rate=self.timeline.sample_rate, fps=self.timeline.fps,
                                  gpus=self.config.backend_options.gpus
                                  if self.backend.name != BackendName.PUPPET else 0))

    def _dispatch(self, ident: bytes, msg: Message) -> None:
        if isinstance(msg, Heartbeat):
            self._send(ident, HeartbeatAck(nonce=msg.nonce, session=msg.session))
        elif isinstance(msg, OpenSession):
            self._open_session(ident, msg)
        elif isinstance(msg, CheckPortrait):
            self._check_portrait(ident, msg)
        elif isinstance(msg, (Audio, EndOfAudio, CloseSession)):
            session = self._session
            if session is None or ident != self._owner or msg.session != session.id:
                self._send(ident, Error(code="no_session", session=msg.session,
                                        message="no open session with that id: open a session first"))
                return
            if isinstance(msg, Audio):
                self._on_audio(ident, session, msg)
            elif isinstance(msg, EndOfAudio):
                session.end_audio()
            else:
                self._end_session(None)
        else:
            self._send(ident, Error(code="protocol", message=f"{msg.TYPE} is not a client message"))

    def _open_session(self, ident: bytes, msg: OpenSession) -> None:
        if self._session is not None:
            self._send(ident, Error(code="busy", message=(
                "the engine is busy with another live session: close it first or start another engine")))
            return
        try:
            settings = settings_from_dict(msg.settings)
            if settings.backend not in (None, self.backend.name):
                raise ValueError(f"this engine serves the {self.backend.name} backend, not "
                                 f"{settings.backend}: restart it with --backend {settings.backend}")
            settings.backend = self.backend.name
            portrait = load_portrait(msg.portrait)
        except (ValueError, PortraitImageError) as exc:
            code = "bad_portrait" if isinstance(exc, PortraitImageError) else "bad_settings"
            self._send(ident, Error(code=code, message=str(exc)))
            return
        sid = f"s{next(self._ids)}-{secrets.token_hex(4)}"
        self._session = LiveSession(sid, self.backend, portrait, settings, self.timeline,
                                    self.config.limits)
        self._owner = ident
        self._announced = False
        self.counters["sessions"] += 1

    def _check_portrait(self, ident: bytes, msg: CheckPortrait) -> None:
        """Decode and check on the checker thread: a live session's frames keep flowing meanwhile."""
        if len(self._checks) >= self.config.max_pending_checks:
            self._send(ident, PortraitChecked(request=msg.request, code="busy", message=(
                "too many portraits are being checked at once: try again in a moment")))
            return
        self._checks.append((ident, msg.request, self._checker.submit(_checked_portrait, self.backend,
                                                                        msg.portrait, msg.request)))

    def _answer_checks(self) -> None:
        while self._checks and self._checks[0][2].done():
            ident, _, answer = self._checks.pop(0)
            self._send(ident, answer.result())

    def _on_audio(self, ident: bytes, session: LiveSession, msg: Audio) -> None:
        width = 4 * max(msg.channels, 1)
        if msg.channels < 1 or len(msg.pcm) % width:
            self._send(ident, Error(code="bad_audio", session=session.id, message=(
                f"audio block of {len(msg.pcm)} bytes is not whole float32 frames of {msg.channels} channel(s)")))
            return
        try:
            session.push_audio(np.frombuffer(msg.pcm, np.float32), msg.sample_rate, msg.channels,
                               msg.capture_t)
        except (ValueError, OverflowError) as exc:
            self._send(ident, Error(code="bad_audio", session=session.id, message=str(exc)))

    # -- outbound --------------------------------------------------------------------------------
    def _send(self, ident: bytes, msg: Message) -> None:
        """Send a reply that must arrive: queued behind earlier ones while the peer's queue is full."""
        if self._sock is None:
            return
        msg.seq = next(self._seq)
        peer = self._peers.get(ident)
        if peer is None:  # forgotten peer (or never seen): best effort only
            self._try_send(ident, encode(msg))
            return
        peer.pending.append(encode(msg))
        while len(peer.pending) > self.config.max_pending_replies:
            peer.pending.popleft()
            self.counters["replies_dropped"] += 1
        self._flush_peer(ident, peer)

    def _send_droppable(self, ident: bytes, msg: Message) -> bool:
        """Frames and metrics: sent only behind every pending reply; False when it did not go out."""
        peer = self._peers.get(ident)
        if self._sock is None or (peer is not None and peer.pending):
            return False
        msg.seq = next(self._seq)
        return self._try_send(ident, encode(msg)) is True

    def _try_send(self, ident: bytes, parts: list) -> bool | None:
        """True: sent. False: the peer's queue is full, try later. None: the peer is gone."""
        try:
            self._sock.send_multipart([ident, *parts], flags=zmq.NOBLOCK, copy=False)
            return True
        except zmq.Again:
            return False
        except zmq.ZMQError:  # EHOSTUNREACH: the peer disconnected
            return None

    def _flush_peer(self, ident: bytes, peer: _Peer) -> None:
        while peer.pending:
            sent = self._try_send(ident, peer.pending[0])
            if sent is False:
                return
            peer.pending.popleft()
            if sent is None:  # gone: nobody will read the rest
                self.counters["replies_dropped"] += 1 + len(peer.pending)
                peer.pending.clear()

    def _flush_replies(self) -> None:
        for ident, peer in self._peers.items():
            if peer.pending:
                self._flush_peer(ident, peer)

    def _service_session(self) -> None:
        session, owner = self._session, self._owner
        if session is None or owner is None:
            return
        if not self._announced:
            if not session.ready.is_set():
                self._report_progress(session, owner)
                return
            self._announced = True
            if owner in self._peers:  # preparation time is not client silence
                self._peers[owner].last_seen = time.monotonic()
            if session.error is None:
                stream = session.stream
                self._send(owner, SessionOpened(
                    session=session.id, backend=self.backend.name, width=stream.width,
                    height=stream.height, fps=self.timeline.fps, sample_rate=self.timeline.sample_rate,
                    chunk_frames=stream.chunk_frames, prepare_ms=stream.prepare_ms,
                    face_box=list(stream.face_box or ())))
        if session.error is not None:
            self._send(owner, Error(code=session.error.code, message=str(session.error), fatal=True,
                                    session=session.id))
            self._end_session(None)
            return
        self._flush_frames(session, owner)
        while session.events:
            kind, text = session.events.popleft()
            self._send(owner, Event(kind=kind, message=text, session=session.id))
        now = time.monotonic()
        if now - self._last_metrics >= self.config.metrics_interval_s:
            self._last_metrics = now
            self._send_metrics(session, owner)
        peer = self._peers.get(owner)
        if peer is None or now - peer.last_seen > self.config.client_timeout_s:
            self._end_session("client went silent")
        elif session.finished.is_set() and session.outbox_frames() == 0:
            # The final metrics and the closing event must reach the client (a file render
            # reports the one and waits for the other): both are replies, queued if need be.
            self._send_metrics(session, owner, final=True)
            self._send(owner, Event(kind="session_ended", session=session.id,
                                    message="all audio has been turned into video"))
            self._end_session(None)

    def _report_progress(self, session: LiveSession, owner: bytes) -> None:
        """While a session prepares (minutes for a big model on a CPU), say so every interval: the
        client waits on this sign of work, not on a fixed timeout."""
        now, interval = time.monotonic(), self.config.progress_interval_s
        elapsed = now - session.prepare_started
        if elapsed < interval or now - self._last_progress < interval:  # quick preparations stay quiet
            return
        self._last_progress = now
        stage = session.prepare_stage
        self._send(owner, Event(kind="progress", session=session.id,
                                message=f"preparing the session: {stage.replace('_', ' ')} ({elapsed:.0f} s)",
                                data={"stage": stage, "elapsed_s": round(elapsed, 1)}))

    def _flush_frames(self, session: LiveSession, owner: bytes) -> None:
        spf = self.timeline.samples_per_frame
        while (out := session.pop_chunk()) is not None:
            frames = np.ascontiguousarray(out.frames)
            msg = Frames(session=session.id, chunk=out.chunk, first_frame=out.first_frame,
                         count=len(frames), width=frames.shape[2], height=frames.shape[1],
                         capture_t0=out.capture_t0, idle=out.idle, timings=out.timings,
                         rgb=memoryview(frames).cast("B"),
                         audio=np.ascontiguousarray(out.audio[: len(frames) * spf]).tobytes())
            if not self._send_droppable(owner, msg):
                session.unpop_chunk(out)
                break

    def _send_metrics(self, session: LiveSession, owner: bytes, final: bool = False) -> None:
        values = session.stats.as_dict(self.timeline)
        values.update(outbox_frames=session.outbox_frames(),
                      backlog_s=session.backlog_samples() / self.timeline.sample_rate,
                      malformed=self.counters["malformed"])
        msg = Metrics(session=session.id, values=values)
        if final:
            self._send(owner, msg)
        else:
            self._send_droppable(owner, msg)

    def _end_session(self, reason: str | None, wait: float | None = 5.0) -> None:
        session, owner = self._session, self._owner
        self._session, self._owner = None, None
        if session is None:
            return
        session.close(wait)
        if reason and owner is not None:
            self._send(owner, Event(kind="session_ended", session=session.id, message=reason))

    # -- address checks --------------------------------------------------------------------------
    def _check_address(self, address: str) -> None:
        if address.startswith("tcp://"):
            host = address[len("tcp://"):].rsplit(":", 1)[0].strip("[]")
            loopback = host == "localhost" or _is_loopback(host)
            if not loopback and not self.config.allow_remote:
                raise EngineServerError(
                    f"refusing to listen on {host}: only loopback is safe; forward the socket over SSH, "
                    "or pass --allow-remote if you really mean to expose the engine")
            if not loopback:
                print(f"warning: engine reachable from the network on {address}; anyone with the "
                      "token can drive it", file=sys.stderr)
        elif not address.startswith("ipc://"):
            raise EngineServerError(f"unsupported address {address!r}: use ipc://PATH or tcp://127.0.0.1:PORT")

    def _remove_stale_socket(self, path) -> None:
        if not path.exists():
            return
        probe = self._ctx.socket(zmq.DEALER)
        probe.setsockopt(zmq.LINGER, 0)
        try:
            probe.connect(f"ipc://{path}")
            probe.send_multipart(encode(Heartbeat()), zmq.NOBLOCK)
            alive = probe.poll(300)
        except zmq.ZMQError:
            alive = False
        finally:
            probe.close(0)
        if alive:
            raise EngineServerError(f"an engine is already serving ipc://{path}: stop it or choose "
                                    "another --socket")
        path.unlink(missing_ok=True)


def _is_loopback(host: str) -> bool:
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


def _checked_portrait(backend: Backend, data: bytes, request: int) -> PortraitChecked:
    """The answer to one `check_portrait` (checker thread): decodes, then asks the backend."""
    try:
        portrait = load_portrait(data)
        box = backend.check_portrait(portrait)
    except (PortraitImageError, BackendError) as exc:
        code = exc.code if isinstance(exc, BackendError) else "bad_portrait"
        return PortraitChecked(request=request, code=code, message=str(exc))
    height, width = portrait.shape[:2]
    return PortraitChecked(request=request, ok=True, width=width, height=height, face_box=list(box or ()))
