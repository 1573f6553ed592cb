"""Text-to-speech with espeak-ng (when installed): a typed sentence becomes a clip that is played
live like a file, in one of the voices the installed espeak-ng offers."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path

from avkit.audio_decode import AudioFileError, load_audio
from studio.audio import AudioSink
from studio.audio.block_feeder import ClipPlayer
from studio.audio.pcm_source import InMemoryClip

MAX_TEXT_CHARS = 2000
DEFAULT_VOICE = "en-us"
LIST_TIMEOUT_S = 15.0


@dataclass(frozen=True)
class Voice:
    code: str  # what `espeak-ng -v` takes, e.g. "en-us"
    name: str  # e.g. "English (America)"

    @property
    def label(self) -> str:
        return f"{self.name} · {self.code}"


def espeak_binary() -> str | None:
    return shutil.which("espeak-ng") or shutil.which("espeak")


def install_command(platform: str = sys.platform) -> str:
    """How to install espeak-ng on `platform`."""
    if platform == "darwin":
        return "brew install espeak-ng"
    if platform == "win32":
        return "install espeak-ng from https://github.com/espeak-ng/espeak-ng/releases and add it to PATH"
    return "sudo apt install espeak-ng (Debian/Ubuntu) or sudo dnf install espeak-ng (Fedora)"


def install_hint() -> str:
    return f"Text-to-speech needs espeak-ng, which is not installed: {install_command()}, then restart the studio."


def list_voices() -> list[Voice]:
    """The voices of the installed espeak-ng, by name (none when it is missing). Takes a moment:
    call it off the UI thread."""
    binary = espeak_binary()
    if binary is None:
        return []
    try:
        listing = subprocess.run([binary, "--voices"], capture_output=True, text=True, timeout=LIST_TIMEOUT_S).stdout
    except (OSError, subprocess.TimeoutExpired):
        return []
    voices = []
    for line in listing.splitlines()[1:]:  # Pty Language Age/Gender VoiceName File Other-languages
        fields = line.split()
        if len(fields) >= 4:
            voices.append(Voice(fields[1], fields[3].replace("_", " ")))
    return sorted(voices, key=lambda v: v.name.lower())


def synthesize(text: str, voice: str = DEFAULT_VOICE, words_per_minute: int = 160):
    """Speak `text` to float32 mono 16 kHz [N]; raises RuntimeError with one line on failure."""
    binary = espeak_binary()
    if binary is None:
        raise RuntimeError(install_hint())
    text = " ".join(text.split())[:MAX_TEXT_CHARS]
    if not text:
        raise RuntimeError("type a sentence to speak first")
    with tempfile.TemporaryDirectory(prefix="flashtalk-tts-") as tmp:
        wav = Path(tmp) / "speech.wav"
        done = subprocess.run([binary, "-v", voice or DEFAULT_VOICE, "-s", str(words_per_minute), "-w", str(wav),
                               "--", text], capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not wav.exists():
            raise RuntimeError(f"espeak-ng failed: {done.stderr.strip()[:200] or done.returncode}")
        try:
            return load_audio(wav)
        except AudioFileError as exc:
            raise RuntimeError(str(exc)) from None


class SpeechSource(ClipPlayer):
    """`say(text, voice, on_ready)` synthesizes on a thread, then plays; on_ready(error_or_empty_string).
    `stop()` ends the sentence; a sentence asked for meanwhile replaces it."""

    def __init__(self, sink: AudioSink, on_end=None):
        super().__init__(sink, on_end=on_end)
        self._requests = 0  # a sentence still being synthesized when stop() or a newer say() came is dropped

    @staticmethod
    def available() -> bool:
        return espeak_binary() is not None

    def say(self, text: str, voice: str, on_ready) -> None:
        self._requests += 1
        number = self._requests

        def work() -> None:
            try:
                pcm = synthesize(text, voice)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                on_ready(str(exc))
                return
            if number != self._requests:
                return
            self.set_source(InMemoryClip(pcm, self.sample_rate))
            self.play()
            on_ready("")
        threading.Thread(target=work, name="tts", daemon=True).start()

    def stop(self) -> None:
        self._requests += 1
        self.set_source(None)
