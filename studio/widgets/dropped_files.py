"""What a file dropped on the window is: a portrait (image) or speech (audio file), by suffix."""
from __future__ import annotations

from pathlib import Path

from PySide6.QtCore import QMimeData

from studio.audio.audio_file_source import AUDIO_FILE_SUFFIXES
from studio.widgets.portrait_panel import IMAGE_SUFFIXES


def dropped_file(mime: QMimeData) -> tuple[str, str] | None:
    """("portrait" | "audio", path) for the first local file of a known kind; None otherwise."""
    for url in mime.urls() if mime.hasUrls() else []:
        path = url.toLocalFile()
        suffix = Path(path).suffix.lower()
        if suffix in IMAGE_SUFFIXES:
            return "portrait", path
        if suffix in AUDIO_FILE_SUFFIXES:
            return "audio", path
    return None
