"""An audio file as a live source: opened off the UI thread, decoded ahead while it plays.

Loading a file first drops the one before (a failed load leaves nothing that could play), then
opens the new one on a thread; only the newest load's result counts.
"""
from __future__ import annotations

import threading
from pathlib import Path

from avkit.audio_decode import AudioFileError, AudioFileReader
from studio.audio import AudioSink
from studio.audio.block_feeder import ClipPlayer
from studio.audio.streamed_file import StreamedFile

AUDIO_FILE_SUFFIXES = (".wav", ".flac", ".mp3", ".ogg", ".opus", ".m4a")
AUDIO_FILE_PATTERNS = " ".join(f"*{suffix}" for suffix in AUDIO_FILE_SUFFIXES)


class AudioFileSource(ClipPlayer):
    """`load(path, on_loaded)` opens on a thread; on_loaded(error_or_empty_string) follows."""

    def __init__(self, sink: AudioSink, on_end=None):
        super().__init__(sink, on_end=on_end)
        self.path: Path | None = None
        self._loads = 0  # numbers the loads: a slow open that was overtaken is dropped
        self._load_lock = threading.Lock()

    @property
    def streamed(self) -> StreamedFile | None:
        source = self._source
        return source if isinstance(source, StreamedFile) else None

    @property
    def error(self) -> str:
        """The file turned out damaged while it played ("" when fine)."""
        streamed = self.streamed
        return streamed.error if streamed is not None else ""

    def unload(self) -> None:
        with self._load_lock:
            self.path = None
            self._loads += 1
            self.set_source(None)

    def load(self, path: str | Path, on_loaded) -> None:
        self.unload()
        number = self._loads

        def work() -> None:
            try:
                reader = AudioFileReader(path)
            except AudioFileError as exc:
                if number == self._loads:  # the caller also checks the path: a newer load may follow
                    on_loaded(str(exc))
                return
            with self._load_lock:
                if number != self._loads:
                    reader.close()
                    return
                self.set_source(StreamedFile(reader))
                self.path = Path(path)
            on_loaded("")
        threading.Thread(target=work, name="audio-file-open", daemon=True).start()

    def load_now(self, path: str | Path) -> None:
        """Blocking variant for scripts and tests; raises AudioFileError with one line."""
        self.unload()
        self.set_source(StreamedFile(AudioFileReader(path)))
        self.path = Path(path)
