"""Hostile local users, hostile messages, hostile timing (issue 17), against real engine processes.

Another local user is simulated with `setpriv` as uid 65534 (those tests need root, as on CI).
docs/reliability.md ("Local attackers") lists the promise each test checks.
"""
from __future__ import annotations

import os
import secrets
import shutil
import signal
import stat
import subprocess
import sys
import tempfile
import threading
import time
from pathlib import Path

import msgpack
import numpy as np
import psutil
import pytest
import zmq

from engine.protocol import EngineClient, EngineError, SessionSettings, default_address
from engine.protocol.codec import decode, encode
from engine.protocol.messages import (
    MAX_FRAMES_BYTES,
    MAX_PROMPT_CHARS,
    PROTOCOL_VERSION,
    Audio,
    Error,
    Event,
    Frames,
    Heartbeat,
    HeartbeatAck,
    Hello,
    Message,
    Metrics,
    OpenSession,
    Welcome,
    frames_per_message,
    settings_to_dict,
)
from scripts.measure_zap_memory import PeakRss
from tests.conftest import ROOT, EngineProcess, RawDealer, wait_for

NOBODY = 65534
AS_NOBODY = ["setpriv", f"--reuid={NOBODY}", f"--regid={NOBODY}", "--clear-groups"]
two_users = pytest.mark.skipif(not hasattr(os, "geteuid") or os.geteuid() != 0 or not shutil.which("setpriv"),
                               reason="simulating a second local user needs root and setpriv")
ENV = {**os.environ, "PYTHONPATH": str(ROOT)}

# Another user's fake engine: listens where ours would, and says how many messages reached it.
IMPOSTOR = """
import os, signal, sys, zmq
os.umask(0)
sock = zmq.Context().socket(zmq.ROUTER)
sock.bind(sys.argv[1])
got = []
signal.signal(signal.SIGTERM, lambda *_: (print(len(got), flush=True), os._exit(0)))
print("listening", flush=True)
while True:
    got.append(sock.recv_multipart())
"""


def serve(*args: str, env: dict | None = None, cwd: Path = ROOT, timeout: float = 60) -> subprocess.CompletedProcess:
    """`flashtalk serve` that is expected to refuse at once (a serving engine runs into the timeout)."""
    return subprocess.run([sys.executable, "-m", "engine", "serve", "--backend", "puppet", *args],
                          capture_output=True, text=True, cwd=cwd, env=env or ENV, timeout=timeout, check=False)


def one_line_refusal(proc: subprocess.CompletedProcess) -> str:
    assert proc.returncode == 2 and proc.stdout == "", (proc.returncode, proc.stdout, proc.stderr)
    lines = proc.stderr.strip().splitlines()
    assert len(lines) == 1, proc.stderr
    return lines[0]


def raw(address: str, ident: bytes | None = None, token: str | bool | None = True) -> zmq.Socket:
    """A DEALER with the engine's token in its handshake (token=True), none or a given one."""
    return RawDealer(address, token=token, ident=ident).sock


def reply(sock: zmq.Socket, timeout: float = 10.0, skip=(Metrics,)) -> Message | None:
    deadline = time.monotonic() + timeout
    while sock.poll(max(0, int((deadline - time.monotonic()) * 1000))):
        msg = decode(sock.recv_multipart())
        if not isinstance(msg, skip) and not (isinstance(msg, Event) and msg.kind == "progress"):
            return msg
    return None


def first_reply_as(address: str, ident: bytes, msg: Message) -> Message:
    """`msg` from a new connection (with the token) that uses `ident`; the first reply. The engine's
    ROUTER ignores a connection whose id it still holds for a connection that left, so try until it
    lets go."""
    for _ in range(40):
        sock = raw(address, ident)
        sock.send_multipart(encode(msg))
        answer = reply(sock, timeout=0.5, skip=())
        sock.close()
        if answer is not None:
            return answer
    raise AssertionError("the engine never answered the reused routing id")


def refused_in_the_handshake(address: str, ident: bytes | None = None, token: str | None = None,
                             *messages: list) -> bool:
    """A peer without the token (or with `token`, a wrong one) sends `messages`: True when its
    handshake failed and nothing came back."""
    peer = RawDealer(address, token=token, ident=ident)
    try:
        for parts in messages:
            peer.offer(parts)
        return peer.handshake() != zmq.EVENT_HANDSHAKE_SUCCEEDED and not peer.sock.poll(200)
    finally:
        peer.close()


def greeted(address: str, ident: bytes | None = None) -> zmq.Socket:
    sock = raw(address, ident)
    sock.send_multipart(encode(Hello(client="raw")))
    assert isinstance(reply(sock), Welcome)
    return sock



@pytest.fixture
def shared_tmp():
    """A folder like /tmp: everybody may create files in it (sticky), and uid 65534 can reach it."""
    folder = Path(tempfile.mkdtemp(prefix="flashtalk-shared-", dir="/tmp"))
    os.chmod(folder, 0o1777)
    yield folder
    shutil.rmtree(folder, ignore_errors=True)


# -- 1. the socket folder ------------------------------------------------------------------------

@two_users
def test_a_runtime_folder_made_by_another_user_is_refused_by_engine_and_client(shared_tmp, monkeypatch):
    folder = shared_tmp / f"flashtalk-{os.getuid()}"  # where our engine would put its socket
    subprocess.run([*AS_NOBODY, "mkdir", "-m777", str(folder)], check=True)
    subprocess.run([*AS_NOBODY, "sh", "-c", f"echo stolen > {folder}/engine.sock.token"], check=True)
    env = {k: v for k, v in ENV.items() if k != "XDG_RUNTIME_DIR"} | {"TMPDIR": str(shared_tmp)}
    line = one_line_refusal(serve(env=env))
    assert str(folder) in line and f"uid {NOBODY}" in line
    st = os.lstat(folder)
    assert st.st_uid == NOBODY and stat.S_IMODE(st.st_mode) == 0o777  # neither adopted nor chmod-ed
    assert sorted(p.name for p in folder.iterdir()) == ["engine.sock.token"]
    # A client of ours reading the default address trusts neither that folder nor the token in it.
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    monkeypatch.setattr(tempfile, "tempdir", str(shared_tmp))
    assert default_address() == f"ipc://{folder}/engine.sock"
    with pytest.raises(PermissionError, match=f"uid {NOBODY}"):
        EngineClient(default_address())


@two_users
def test_a_socket_another_user_listens_on_is_refused_by_engine_and_client(shared_tmp):
    address = f"ipc://{shared_tmp}/engine.sock"
    impostor = subprocess.Popen([*AS_NOBODY, sys.executable, "-c", IMPOSTOR, address], stdout=subprocess.PIPE,
                                text=True, env=ENV)
    try:
        assert impostor.stdout.readline().strip() == "listening"
        line = one_line_refusal(serve("--socket", address))
        assert "engine.sock" in line and f"uid {NOBODY}" in line
        assert stat.S_ISSOCK(os.lstat(f"{shared_tmp}/engine.sock").st_mode)  # not removed
        with pytest.raises(PermissionError, match=f"uid {NOBODY}"):
            EngineClient(address, token="our-secret").connect(timeout=3)
    finally:
        impostor.terminate()
        received = impostor.communicate(timeout=10)[0].strip()
    assert received == "0"  # neither the engine's probe nor the client's hello reached it
    assert stat.S_IMODE(os.stat(shared_tmp).st_mode) == 0o1777


# -- 5. what sits at the socket path --------------------------------------------------------------

def test_serve_never_removes_a_file_that_is_not_its_socket(tmp_path):
    notes = tmp_path / "notes.txt"
    notes.write_text("my notes")
    line = one_line_refusal(serve("--socket", f"ipc://{notes}"))
    assert "not a socket" in line and str(notes) in line
    assert notes.read_text() == "my notes"


def test_a_shared_sticky_folder_keeps_its_mode(tmp_path, portrait_bytes):
    shared = tmp_path / "shared"
    shared.mkdir()
    os.chmod(shared, 0o1777)
    address = f"ipc://{shared}/engine.sock"
    engine = EngineProcess(address)
    try:
        assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777
        assert stat.S_IMODE(os.stat(shared / "engine.sock.token").st_mode) == 0o600
        with EngineClient(address) as client:
            assert client.welcome.backends == ["puppet"]
    finally:
        assert engine.stop() == 0
    assert stat.S_IMODE(os.stat(shared).st_mode) == 0o1777 and not list(shared.iterdir())


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="abstract sockets are Linux only")
def test_an_abstract_socket_keeps_its_token_in_our_private_folder(tmp_path, monkeypatch):
    work, runtime = tmp_path / "work", tmp_path / "runtime"
    work.mkdir()
    runtime.mkdir()
    os.chmod(work, 0o755)
    monkeypatch.setenv("XDG_RUNTIME_DIR", str(runtime))
    address = f"ipc://@flashtalk-test-{secrets.token_hex(6)}"
    proc = subprocess.Popen([sys.executable, "-m", "engine", "serve", "--backend", "puppet", "--socket", address],
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=work,
                            env={**ENV, "XDG_RUNTIME_DIR": str(runtime)})
    try:
        assert proc.stdout.readline().startswith("ready "), proc.stderr.read() if proc.poll() else ""
        tokens = list((runtime / "flashtalk").iterdir())
        assert len(tokens) == 1 and stat.S_IMODE(tokens[0].stat().st_mode) == 0o600
        assert stat.S_IMODE((runtime / "flashtalk").stat().st_mode) == 0o700
        with EngineClient(address) as client:
            assert client.welcome.backends == ["puppet"]
        assert not list(work.iterdir()) and stat.S_IMODE(work.stat().st_mode) == 0o755
    finally:
        proc.terminate()
        proc.wait(10)
    assert not list((runtime / "flashtalk").iterdir())


# -- 2. memory before hello ----------------------------------------------------------------------

PART = 32 * 2**20 - 1  # each part just under the per-part limit (MAXMSGSIZE)


def test_a_peer_without_the_token_makes_the_engine_hold_nothing(engine):
    """The probe of issue 17 (scripts/measure_zap_memory.py), smaller: [heartbeat] + 6 parts of
    32 MiB - 1 (192 MiB), twice, before any hello. Without the token in the handshake it never
    leaves the peer: the engine's RSS stays flat and nothing comes back (it held the whole message
    while it arrived before: 1.36 GiB for the issue's 40 parts)."""
    probe = [msgpack.packb({"type": "heartbeat"}), *[bytes(PART)] * 6]
    with PeakRss(engine.proc.pid) as rss:
        for token in (None, "guessed"):
            assert refused_in_the_handshake(engine.address, None, token, probe, probe)
    assert rss.peak - rss.start < 16, f"the engine grew {rss.peak - rss.start:.0f} MiB"  # MiB
    with EngineClient(engine.address) as client:  # and the engine serves on
        client.heartbeat(nonce=3)
        assert isinstance(client.recv(5), HeartbeatAck)


def test_an_oversized_message_is_refused_and_not_kept(engine):
    """With the token: the whole-message bound (3 parts, 32 MiB + 64 KiB) still holds, before hello
    or after, and what ZeroMQ assembled is returned at once."""
    rss = psutil.Process(engine.proc.pid).memory_info
    base = rss().rss
    sock = raw(engine.address)
    sock.send_multipart([msgpack.packb({"type": "heartbeat"}), *[bytes(PART)] * 3], copy=False)  # 96 MiB
    answer = reply(sock, timeout=60)
    assert isinstance(answer, Error) and answer.code == "protocol" and "parts" in answer.message
    wait_for(lambda: rss().rss < base + 50 * 2**20, timeout=20)
    sock.close()


# -- 3. and 4. the token in the handshake, hello on the connection ----------------------------------

def test_token_less_clients_cannot_push_out_an_authenticated_one(engine):
    with EngineClient(engine.address) as client:
        peers = []
        try:
            for i in range(70):  # more than the 64 clients the engine remembers
                peer = RawDealer(engine.address, token=None if i % 2 else "guessed")
                peers.append(peer)
                peer.offer(encode(Heartbeat()))
                assert peer.handshake() != zmq.EVENT_HANDSHAKE_SUCCEEDED, i
            # and nothing came back to any of them (one wait for all 70, not 200 ms each)
            poller = zmq.Poller()
            for peer in peers:
                poller.register(peer.sock, zmq.POLLIN)
            assert poller.poll(200) == []
        finally:
            for peer in peers:
                peer.close()
        client.heartbeat(nonce=7)
        answer = client.recv(5)
    assert isinstance(answer, HeartbeatAck) and answer.nonce == 7, answer


def test_a_reused_routing_id_gets_no_connection_without_the_token_and_must_say_hello_again(engine):
    ident = f"victim-{secrets.token_hex(4)}".encode()
    victim = greeted(engine.address, ident)
    victim.send_multipart(encode(Heartbeat(nonce=1)))
    assert isinstance(reply(victim), HeartbeatAck)
    victim.close()
    assert refused_in_the_handshake(engine.address, ident, None, encode(Heartbeat(nonce=2)))
    answer = first_reply_as(engine.address, ident, Heartbeat(nonce=2))  # the token, but no hello
    assert isinstance(answer, Error) and answer.code == "protocol" and "hello" in answer.message, answer


def test_a_dropped_owner_session_ends_at_once_and_cannot_be_taken_over(tmp_path, portrait_bytes):
    engine = EngineProcess(f"ipc://{tmp_path}/run/engine.sock", "--client-timeout", "60")
    try:
        ident = f"owner-{secrets.token_hex(4)}".encode()
        owner = greeted(engine.address, ident)
        owner.send_multipart(encode(OpenSession(portrait=portrait_bytes, settings=settings_to_dict(
            SessionSettings(width=64, height=64, mode="live")))))
        opened = reply(owner, timeout=60)
        assert opened.TYPE == "session_opened", opened
        owner.close()
        audio = encode(Audio(session=opened.session, pcm=np.zeros(1600, np.float32).tobytes()))
        assert refused_in_the_handshake(engine.address, ident, None, audio)  # no connection at all
        answer = first_reply_as(engine.address, ident, Audio(session=opened.session, pcm=audio[1]))
        assert isinstance(answer, Error) and answer.code == "protocol", answer  # no frames, no session
        with EngineClient(engine.address) as client:  # the session ended with its connection
            deadline = time.monotonic() + 10
            while True:
                try:
                    client.open_session(portrait_bytes, SessionSettings(width=64, height=64), timeout=30)
                    break
                except EngineError as exc:
                    assert exc.code == "busy" and time.monotonic() < deadline, exc
                    time.sleep(0.2)
            client.close_session()
    finally:
        engine.stop()


def test_a_refused_hello_revokes_the_connections_earlier_one(engine):
    sock = greeted(engine.address)
    sock.send_multipart(encode(Hello(version=PROTOCOL_VERSION - 1)))  # the version before the token moved
    refused = reply(sock)
    assert isinstance(refused, Error) and refused.code == "version" and refused.fatal
    sock.send_multipart(encode(Heartbeat(nonce=5)))
    answer = reply(sock)
    assert isinstance(answer, Error) and answer.code == "protocol", answer
    sock.close()


def test_a_client_with_a_wrong_token_says_so_at_once(engine, tmp_path):
    """EngineClient reads the refusal off its socket's monitor: code `auth`, one line naming the
    token file, long before its timeout (it waited for the whole timeout before)."""
    wrong = tmp_path / "wrong.token"
    wrong.write_text("not-the-token\n")
    wrong.chmod(0o600)
    with pytest.raises(EngineError) as info:
        EngineClient(engine.address, token_file=str(wrong)).connect(timeout=120)
    line = str(info.value)
    assert info.value.code == "auth" and "\n" not in line
    assert "did not accept our token" in line and str(wrong) in line and engine.address in line


# -- 8. a client never blocks on an engine that stopped reading ------------------------------------

def test_a_client_never_blocks_on_an_engine_that_stopped_reading(engine, portrait_bytes):
    client = EngineClient(engine.address)
    client.connect()
    client.open_session(portrait_bytes, SessionSettings(width=64, height=64, mode="live"))
    block = np.zeros(320, np.float32)  # 20 ms, as the studio sends
    stop, outcome = threading.Event(), {}

    def keep_sending():
        try:
            while not stop.is_set():
                client.send_audio(block, 16000)
                client.recv(0)
        except EngineError as exc:
            outcome["error"] = exc

    os.kill(engine.proc.pid, signal.SIGSTOP)
    try:
        sender = threading.Thread(target=keep_sending, daemon=True)
        sender.start()
        sender.join(60)
        blocked = sender.is_alive()
    finally:
        stop.set()
        os.kill(engine.proc.pid, signal.SIGCONT)
    sender.join(30)
    client.close()
    assert not blocked, "a send blocked on the stopped engine"
    assert outcome["error"].code == "engine_lost" and "\n" not in str(outcome["error"])


# -- 10. serve on a full file system, and a stale token file of the same pid --------------------

@pytest.fixture
def small_fs(tmp_path):
    """A tmpfs of our own, `mount(options)` to make it: a real file system that runs out of room."""
    if os.geteuid() != 0 or not shutil.which("mount"):
        pytest.skip("mounting a small tmpfs to fill needs root (as on CI)")
    folder = tmp_path / "fs"
    folder.mkdir()

    def mount(options: str) -> Path:
        done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"mode=0700,{options}", "tmpfs", str(folder)],
                              capture_output=True, text=True, check=False)
        if done.returncode:
            pytest.skip(f"cannot mount a tmpfs here: {done.stderr.strip()}")
        return folder

    yield mount
    subprocess.run(["umount", str(folder)], capture_output=True, check=False)


@pytest.mark.parametrize("full", ["no room for data", "no inodes left"])
def test_serve_on_a_full_file_system_says_so_and_leaves_nothing(small_fs, full):
    if full == "no room for data":  # the socket can be made, its token cannot be written
        folder = small_fs("size=64k")
        (folder / "filler").write_bytes(bytes(64 * 1024))
    else:  # not even the socket can be made (the root folder and the filler take both inodes)
        folder = small_fs("size=64k,nr_inodes=2")
        (folder / "filler").touch()
    proc = serve("--socket", f"ipc://{folder}/engine.sock")
    assert [p.name for p in folder.iterdir()] == ["filler"]  # no socket, no token, no .tmp
    line = one_line_refusal(proc)
    assert line.startswith("flashtalk serve: the disk is full: cannot ") and "--socket" in line, line


def test_a_stale_token_tmp_file_of_our_pid_neither_breaks_start_up_nor_is_followed(tmp_path):
    """The engine `exec`s in the process that planted `<sock>.token.<pid>.tmp` (as a crashed engine
    with the same pid, or another program, would have left it): a link to a file of ours."""
    run, victim = tmp_path / "run", tmp_path / "victim.txt"
    run.mkdir(mode=0o700)
    victim.write_text("keep me")
    sock = run / "engine.sock"
    plant = ("import os, sys; os.symlink(sys.argv[1], f'{sys.argv[2]}.token.{os.getpid()}.tmp'); "
             "os.execv(sys.executable, [sys.executable, '-m', 'engine', 'serve', '--backend', 'puppet', "
             "'--socket', 'ipc://' + sys.argv[2]])")
    proc = subprocess.Popen([sys.executable, "-c", plant, str(victim), str(sock)], stdout=subprocess.PIPE,
                            stderr=subprocess.PIPE, text=True, cwd=ROOT, env=ENV)
    try:
        line = proc.stdout.readline()
        assert line.startswith("ready "), (line, proc.stderr.read() if proc.poll() is not None else "")
        stale = run / f"engine.sock.token.{proc.pid}.tmp"
        assert stale.is_symlink() and victim.read_text() == "keep me"
        with EngineClient(f"ipc://{sock}") as client:
            assert client.welcome.backends == ["puppet"]
    finally:
        proc.terminate()
        assert proc.wait(10) == 0
    assert victim.read_text() == "keep me"
    assert sorted(p.name for p in run.iterdir()) == [stale.name]  # ours removed, the stranger's left as it was


# -- 11. and 12. options and settings that used to misbehave -------------------------------------

@pytest.mark.parametrize("value", ["nan", "inf", "0", "-1"])
def test_a_client_timeout_that_is_not_a_positive_number_is_refused(value, tmp_path):
    line = one_line_refusal(serve("--client-timeout", value, "--socket", f"ipc://{tmp_path}/engine.sock"))
    assert "--client-timeout" in line
    assert not list(tmp_path.iterdir())


@pytest.mark.parametrize("chunk_frames", [201, 250])
def test_a_long_live_chunk_that_a_pause_cuts_short_still_shows_its_speech(engine, portrait_bytes, speech,
                                                                          chunk_frames):
    """A chunk of 8-10 s is rarely filled without a pause: the pause finishes it with silence, and
    the speech it holds comes back as speech, not as an idle chunk (it used to: nothing but idle)."""
    spf, sent = 640, np.resize(speech, (chunk_frames + 50) * 640)  # one whole chunk and 2 s more
    with EngineClient(engine.address) as client:
        client.open_session(portrait_bytes, SessionSettings(width=64, height=64, mode="live",
                                                            chunk_frames=chunk_frames))
        for i in range(0, sent.size, 1600):  # 0.1 s blocks at once, then nothing: a pause
            client.send_audio(sent[i:i + 1600], 16000)
        chunks = []
        deadline = time.monotonic() + 60
        while len(chunks) < 2 and time.monotonic() < deadline:
            if isinstance(msg := client.recv(1), Frames):
                chunks.append(msg)
        client.close_session()
    assert [(c.first_frame, c.count, c.idle) for c in chunks] == [(0, chunk_frames, False),
                                                                  (chunk_frames, chunk_frames, False)]
    shown = np.frombuffer(chunks[1].audio, np.float32)
    assert np.array_equal(shown[:50 * spf], sent[chunk_frames * spf:]) and not shown[50 * spf:].any()


def test_a_chunk_too_big_for_one_frames_message_is_refused_at_open(engine, portrait_bytes):
    """2048x2048 is 12 MiB a frame: 43 frames make a Frames message over the 512 MiB that every
    client refuses, so such a session never showed a frame. The engine says so when it opens."""
    fit = frames_per_message(2048, 2048, 640)
    assert fit * 2048 * 2048 * 3 <= MAX_FRAMES_BYTES < (fit + 1) * 2048 * 2048 * 3 and fit == 42
    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as info:
            client.open_session(portrait_bytes, SessionSettings(width=2048, height=2048, mode="live",
                                                                chunk_frames=43))
        assert info.value.code == "bad_settings" and "\n" not in str(info.value)
        assert "at most 42 chunk_frames" in str(info.value) and "512 MiB" in str(info.value)
        opened = client.open_session(portrait_bytes, SessionSettings(width=64, height=64, chunk_frames=43))
        assert opened.chunk_frames == 43  # a size where it fits is served as before
        client.close_session()


def test_a_backend_name_with_a_line_break_gets_a_one_line_error(engine, portrait_bytes):
    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as info:
            client.open_session(portrait_bytes, SessionSettings(backend="flash\ntalk"))
    assert info.value.code == "bad_settings" and "\n" not in str(info.value)


def test_a_prompt_too_long_for_the_wire_says_how_long_it_may_be(engine, portrait_bytes, tmp_path):
    with EngineClient(engine.address) as client:
        with pytest.raises(EngineError) as info:  # refused before it is sent
            client.open_session(portrait_bytes, SessionSettings(prompt="x" * 70_000))
        assert info.value.code == "bad_settings"
        assert "shorten the prompt" in str(info.value) and str(MAX_PROMPT_CHARS) in str(info.value)
    sock = greeted(engine.address)  # a client that sends it anyway: the engine says the same
    sock.send_multipart(encode(OpenSession(portrait=portrait_bytes, settings={"prompt": "x" * 5000})))
    answer = reply(sock)
    assert isinstance(answer, Error) and answer.code == "bad_settings" and str(MAX_PROMPT_CHARS) in answer.message
    sock.close()
    proc = subprocess.run([sys.executable, "-m", "engine", "render", "--quiet", "--prompt", "x" * 70_000,
                           "--out", str(tmp_path / "a.mp4")], capture_output=True, text=True, cwd=ROOT, env=ENV,
                          timeout=120, check=False)
    line = one_line_refusal(proc)
    assert "shorten the prompt" in line and not (tmp_path / "a.mp4").exists()
