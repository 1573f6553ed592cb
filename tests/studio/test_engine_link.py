"""The studio's engine link on the wire: one heartbeat, and a child engine's command line that the
engine's own parser accepts.

Its other behaviour (sessions, restarts, reconnects) is tested against a real engine in
test_studio_session.py and test_cli.py; here a ZeroMQ ROUTER (behind the engine's token check) stands
in for the engine so that the test can see each message the studio sends, and when. And an
attached studio with the wrong token file says so, in the engine panel's line.
"""
from __future__ import annotations

import threading
import time

import numpy as np
import zmq

from engine.cli import build_parser
from engine.protocol import decode, encode
from engine.protocol.address import new_token, write_token
from engine.protocol.client import HEARTBEAT_S
from engine.protocol.engine_state import EngineState
from engine.protocol.messages import Heartbeat, HeartbeatAck, Hello, Welcome
from engine.server.token_check import TokenCheck, require_token
from studio.engine_link.link import EngineLink
from studio.engine_link.options import EngineOptions
from studio.engine_link.worker import EngineWorker

LISTEN_S = 4.5


def heartbeat_times(address: str, token: str, listen_s: float) -> list[float]:
    """Serve hello and heartbeats like an engine for `listen_s`; when each heartbeat arrived."""
    ctx = zmq.Context()  # its own: the token check's handler serves this context's sockets
    check = TokenCheck(ctx, token)
    check.start()
    router = ctx.socket(zmq.ROUTER)
    router.setsockopt(zmq.LINGER, 0)
    require_token(router)
    router.bind(address)
    worker = EngineWorker(address)
    thread = threading.Thread(target=worker.run, name="engine-worker", daemon=True)
    thread.start()
    beats: list[float] = []
    try:
        deadline = time.monotonic() + listen_s
        while time.monotonic() < deadline:
            if not router.poll(50):
                continue
            ident, *parts = router.recv_multipart()
            msg = decode(parts)
            if isinstance(msg, Hello):
                router.send_multipart([ident, *encode(Welcome(engine="stand-in"))])
            elif isinstance(msg, Heartbeat):
                beats.append(time.monotonic())
                router.send_multipart([ident, *encode(HeartbeatAck(nonce=msg.nonce))])
    finally:
        worker.stop()
        thread.join(5)
        router.close()
        check.stop()
        ctx.term()
    return beats


def test_an_idle_studio_sends_one_heartbeat_per_period(tmp_path, qapp):
    """The worker used to beat on its own clock beside the client's: two heartbeats ~10 ms apart
    every second. Now only the client beats, when nothing else was sent for HEARTBEAT_S."""
    address = f"ipc://{tmp_path}/engine.sock"
    token = new_token()
    write_token(address, token)
    beats = heartbeat_times(address, token, LISTEN_S)
    assert len(beats) >= 2, "the studio must keep an idle connection alive"
    gaps = np.diff(beats)
    assert gaps.min() > 0.5 * HEARTBEAT_S, f"heartbeats {np.round(gaps, 3).tolist()} s apart"


def test_a_child_engines_command_line_is_one_the_engine_parses():
    options = EngineOptions(backend="flashtalk", model_dir="/models/SoulX-FlashTalk-14B", gpus=2)
    args = build_parser().parse_args(options.serve_args("ipc:///tmp/studio.sock"))
    assert (args.command, args.socket, args.backend, args.gpus) == ("serve", "ipc:///tmp/studio.sock", "flashtalk", 2)
    assert str(args.model) == options.model_dir and args.parent_pid > 0
    puppet = build_parser().parse_args(EngineOptions().serve_args("ipc:///tmp/studio.sock"))
    assert puppet.backend == EngineOptions().backend == "puppet" and puppet.gpus == EngineOptions().gpus


def test_an_attached_studio_with_the_wrong_token_says_the_engine_refused_it(engine, tmp_path, qtbot):
    """The engine's handshake refuses a wrong token without a word; the studio's line says why (not
    "stopped answering") and it keeps retrying, as for any lost attached engine."""
    wrong = tmp_path / "other.token"
    wrong.write_text(new_token() + "\n")
    wrong.chmod(0o600)
    link = EngineLink()
    lines: list[str] = []
    link.state_changed.connect(lambda state, line: lines.append(line) if state is EngineState.RECONNECTING else None)
    try:
        link.start(EngineOptions(attach_address=engine.address, token_file=str(wrong)))
        qtbot.waitUntil(lambda: bool(lines), timeout=30_000)
    finally:
        link.shutdown()
    assert "did not accept our token" in lines[0] and str(wrong) in lines[0] and "\n" not in lines[0]
    assert not link.is_connected
