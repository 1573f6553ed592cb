"""An audio file as a live source: decoded off the UI thread, then played in real time."""
from __future__ import annotations

import threading
from pathlib import Path

from avkit.audio_decode import AudioFileError, load_audio
from studio.audio import AudioSink
from studio.audio.block_feeder import ClipPlayer

AUDIO_FILE_PATTERNS = "*.wav *.flac *.mp3 *.ogg *.opus *.m4a"


class AudioFileSource(ClipPlayer):
    """`load(path, on_loaded)` decodes on a thread; on_loaded(error_or_empty_string) follows."""

    def __init__(self, sink: AudioSink, on_end=None):
        super().__init__(sink, on_end=on_end)
        self.path: Path | None = None

    def load(self, path: str | Path, on_loaded) -> None:
        def work() -> None:
            try:
                pcm = load_audio(path)
            except AudioFileError as exc:
                on_loaded(str(exc))
                return
            self.pause()
            self.set_clip(pcm)
            self.path = Path(path)
            on_loaded("")
        threading.Thread(target=work, name="audio-file-decode", daemon=True).start()

    def load_now(self, path: str | Path) -> None:
        """Blocking variant for scripts and tests; raises AudioFileError with one line."""
        self.set_clip(load_audio(path))
        self.path = Path(path)
