"""Text-to-speech with espeak-ng (when installed): a typed sentence becomes a clip that is played
live like a file."""
from __future__ import annotations

import shutil
import subprocess
import sys
import tempfile
import threading
from pathlib import Path

from avkit.audio_decode import AudioFileError, load_audio
from studio.audio import AudioSink
from studio.audio.block_feeder import ClipPlayer

MAX_TEXT_CHARS = 2000


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


def synthesize(text: str, voice: str = "en", words_per_minute: int = 160):
    """Speak `text` to float32 mono 16 kHz [N]; raises RuntimeError with one line on failure."""
    binary = espeak_binary()
    if binary is None:
        raise RuntimeError(install_hint())
    text = " ".join(text.split())[:MAX_TEXT_CHARS]
    if not text:
        raise RuntimeError("type a sentence to speak first")
    with tempfile.TemporaryDirectory(prefix="flashtalk-tts-") as tmp:
        wav = Path(tmp) / "speech.wav"
        done = subprocess.run([binary, "-v", voice, "-s", str(words_per_minute), "-w", str(wav), "--", text],
                              capture_output=True, text=True, timeout=60)
        if done.returncode != 0 or not wav.exists():
            raise RuntimeError(f"espeak-ng failed: {done.stderr.strip()[:200] or done.returncode}")
        try:
            return load_audio(wav)
        except AudioFileError as exc:
            raise RuntimeError(str(exc)) from None


class SpeechSource(ClipPlayer):
    """`say(text, on_ready)` synthesizes on a thread, then plays; on_ready(error_or_empty_string)."""

    def __init__(self, sink: AudioSink, on_end=None):
        super().__init__(sink, on_end=on_end)

    @staticmethod
    def available() -> bool:
        return espeak_binary() is not None

    def say(self, text: str, on_ready) -> None:
        def work() -> None:
            try:
                pcm = synthesize(text)
            except (RuntimeError, subprocess.TimeoutExpired, OSError) as exc:
                on_ready(str(exc))
                return
            self.pause()
            self.set_clip(pcm)
            self.play()
            on_ready("")
        threading.Thread(target=work, name="tts", daemon=True).start()
