"""The engine connection on its own thread: socket I/O never runs on the UI thread.

`EngineWorker.run()` loops on a QThread: it sends queued commands, receives messages and reports
everything through Qt signals (delivered queued to the UI thread). The heartbeat is the client's
own (`EngineClient.recv` pings whenever nothing was sent for a while); the worker only watches
that the engine keeps answering. Commands (`open_session`, `send_audio`, ...) may be called from
any thread.
"""
from __future__ import annotations

import queue
import time

import numpy as np
from PySide6.QtCore import QObject, Signal, Slot

from avkit.timeline import SAMPLE_RATE
from engine.protocol import EngineClient, EngineError, ProtocolError, SessionSettings
from engine.protocol.client import PREPARE_SILENCE_S
from engine.protocol.frame_decoding import decode_frames
from engine.protocol.messages import (
    CheckPortrait,
    Error,
    Event,
    Frames,
    HeartbeatAck,
    Metrics,
    OpenSession,
    PortraitChecked,
    SessionOpened,
    settings_to_dict,
)
from studio.engine_link.received_chunk import ReceivedChunk

DEAD_AFTER_S = 5.0  # no message at all from the engine for this long: it is gone or hung
# While a session prepares, the engine's face detector or model loading may hold its process (the
# puppet's dlib does not let go of Python's lock) for many seconds on a loaded machine: then only
# the protocol's own bound on silence during preparation applies.
POLL_S = 0.01
MAX_AUDIO_QUEUE = 500  # 10 s of 20 ms blocks; older blocks are dropped beyond this


class EngineWorker(QObject):
    connected = Signal(object)  # Welcome
    session_opened = Signal(object)  # SessionOpened
    session_refused = Signal(str, str)  # code, one-line message (e.g. bad_portrait)
    portrait_checked = Signal(object)  # PortraitChecked
    chunk = Signal(object)  # ReceivedChunk
    metrics = Signal(object)
    event = Signal(str, str, object)  # kind, message, data (dict; the engine's numbers behind it)
    error = Signal(str, str, bool)  # code, message, fatal
    lost = Signal(str)  # the connection is gone; why
    finished = Signal()

    def __init__(self, address: str, token_file: str | None = None, *, dead_after_s: float = DEAD_AFTER_S):
        super().__init__()
        self.address = address
        self.token_file = token_file
        self.dead_after_s = dead_after_s
        self._commands: queue.Queue = queue.Queue()
        self._audio: queue.Queue = queue.Queue(maxsize=MAX_AUDIO_QUEUE)
        self._stopping = False
        self._opening = False  # an OpenSession is out and unanswered
        self.session_id = ""  # the open session's id ("" when none); read by other threads
        self.dropped_audio_blocks = 0

    # -- commands (any thread) -------------------------------------------------------------------
    def open_session(self, portrait: bytes, settings: SessionSettings) -> None:
        self._commands.put(("open", portrait, settings))

    def send_audio(self, pcm: np.ndarray, capture_t: float, sample_rate: int = SAMPLE_RATE) -> None:
        if not self.session_id:
            return  # nothing listens yet: live audio before a session is simply not sent
        try:
            self._audio.put_nowait((pcm, sample_rate, capture_t))
        except queue.Full:
            self.dropped_audio_blocks += 1

    def check_portrait(self, portrait: bytes, request: int) -> None:
        """Ask whether `portrait` would make a session; an open session goes on meanwhile."""
        self._commands.put(("check", portrait, request))

    def end_audio(self) -> None:
        self._commands.put(("end",))

    def close_session(self) -> None:
        self._commands.put(("close",))

    def stop(self) -> None:
        self._stopping = True

    # -- the loop (worker thread) ----------------------------------------------------------------
    @Slot()
    def run(self) -> None:
        client = None
        try:
            client = EngineClient(self.address, token_file=self.token_file, client_name="flashtalk-studio")
            self.connected.emit(client.connect(timeout=self.dead_after_s))
            self._loop(client)
        except (EngineError, ProtocolError, FileNotFoundError, OSError) as exc:
            if not self._stopping:
                self.lost.emit(str(exc))
        finally:
            self.session_id = ""
            if client is not None:
                client.close()
            self.finished.emit()

    def _loop(self, client: EngineClient) -> None:
        last_heard = time.monotonic()
        while not self._stopping:
            self._run_commands(client)
            self._send_audio(client)
            msg = client.recv(POLL_S)  # sends the heartbeat when it is due
            now = time.monotonic()
            while msg is not None:
                last_heard = now
                self._dispatch(client, msg, now)
                msg = client.recv(0)
            patience = max(self.dead_after_s, PREPARE_SILENCE_S) if self._opening else self.dead_after_s
            if now - last_heard > patience:
                self.lost.emit(f"the engine stopped answering for {patience:.0f} s")
                return
        if client.session is not None:
            client.close_session()

    def _run_commands(self, client: EngineClient) -> None:
        while True:
            try:
                cmd = self._commands.get_nowait()
            except queue.Empty:
                return
            if cmd[0] == "open":
                if client.session is not None:
                    client.close_session()
                self.session_id = ""
                self._opening = True
                client.send(OpenSession(portrait=cmd[1], settings=settings_to_dict(cmd[2])))
            elif cmd[0] == "check":
                client.send(CheckPortrait(portrait=cmd[1], request=cmd[2]))
            elif client.session is not None and cmd[0] == "end":
                self._send_audio(client)
                client.end_audio()
            elif client.session is not None and cmd[0] == "close":
                client.close_session()
                self.session_id = ""

    def _send_audio(self, client: EngineClient) -> None:
        while True:
            try:
                pcm, rate, capture_t = self._audio.get_nowait()
            except queue.Empty:
                return
            if client.session is not None:
                client.send_audio(pcm, rate, capture_t)

    def _dispatch(self, client: EngineClient, msg, now: float) -> None:
        if isinstance(msg, Frames):
            if client.session is None or msg.session != client.session.session:
                return  # a late chunk of a session we already left
            frames, audio = decode_frames(msg)
            self.chunk.emit(ReceivedChunk(msg.first_frame, frames, audio, msg.capture_t0, msg.idle,
                                          dict(msg.timings), now, msg.t))
        elif isinstance(msg, SessionOpened):
            client.session = msg
            self._opening = False
            self.session_id = msg.session
            self.session_opened.emit(msg)
        elif isinstance(msg, PortraitChecked):
            self.portrait_checked.emit(msg)
        elif isinstance(msg, Metrics):
            self.metrics.emit(dict(msg.values))
        elif isinstance(msg, Event):
            self.event.emit(msg.kind, msg.message, dict(msg.data))
            if msg.kind == "session_ended" and client.session is not None \
                    and msg.session == client.session.session:
                client.session = None
                self.session_id = ""
        elif isinstance(msg, Error):
            if self._opening and client.session is None:
                self._opening = False
                self.session_refused.emit(msg.code, msg.message)
            elif msg.fatal and client.session is not None and msg.session == client.session.session:
                client.session = None
                self.session_id = ""
                self.error.emit(msg.code, msg.message, True)
            else:
                self.error.emit(msg.code, msg.message, msg.fatal)
        elif not isinstance(msg, HeartbeatAck):
            self.event.emit("info", f"unexpected {msg.TYPE} message from the engine", {})
