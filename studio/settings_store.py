"""What persists across runs (QSettings): last portrait and recents, last audio file, devices,
voice, engine options, the live choice (quality, target latency), where recordings go, window
layout. (Which source is on air does not: a source goes on air only when the user starts it.)"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields
from pathlib import Path

from PySide6.QtCore import QByteArray, QSettings, QStandardPaths

from studio.engine_link.options import EngineOptions, LiveChoice


def default_recordings_folder() -> str:
    """The user's Videos (Movies) folder / FlashTalk."""
    videos = QStandardPaths.writableLocation(QStandardPaths.MoviesLocation) or str(Path.home())
    return str(Path(videos) / "FlashTalk")


@dataclass
class StudioSettings:
    last_portrait: str = ""
    recent_portraits: list[str] = field(default_factory=list)
    last_audio_file: str = ""
    input_device: str = ""
    output_device: str = ""
    voice: str = ""  # espeak-ng voice code ("" : the default)
    recordings_folder: str = field(default_factory=default_recordings_folder)
    engine: EngineOptions = field(default_factory=EngineOptions)
    live: LiveChoice = field(default_factory=LiveChoice)
    window_geometry: QByteArray = field(default_factory=QByteArray)
    window_state: QByteArray = field(default_factory=QByteArray)


def _as_list(value) -> list[str]:
    if value is None:
        return []
    return [str(v) for v in value] if isinstance(value, (list, tuple)) else [str(value)]


def load_settings(store: QSettings) -> StudioSettings:
    out = StudioSettings()
    out.last_portrait = str(store.value("portrait/last", ""))
    out.recent_portraits = _as_list(store.value("portrait/recent", []))
    out.last_audio_file = str(store.value("audio/last_file", ""))
    out.input_device = str(store.value("audio/input_device", ""))
    out.output_device = str(store.value("audio/output_device", ""))
    out.voice = str(store.value("audio/voice", ""))
    out.recordings_folder = str(store.value("recordings/folder", "")) or out.recordings_folder
    for group, options in (("engine", out.engine), ("live", out.live)):
        for f in fields(options):
            default = getattr(options, f.name)
            value = store.value(f"{group}/{f.name}", default)
            try:
                setattr(options, f.name, type(default)(value))
            except (TypeError, ValueError):  # a hand-edited or older settings file: keep the default
                pass
    out.window_geometry = store.value("window/geometry", QByteArray()) or QByteArray()
    out.window_state = store.value("window/state", QByteArray()) or QByteArray()
    return out


def save_settings(store: QSettings, settings: StudioSettings) -> None:
    store.setValue("portrait/last", settings.last_portrait)
    store.setValue("portrait/recent", list(settings.recent_portraits))
    store.setValue("audio/last_file", settings.last_audio_file)
    store.setValue("audio/input_device", settings.input_device)
    store.setValue("audio/output_device", settings.output_device)
    store.setValue("audio/voice", settings.voice)
    store.setValue("recordings/folder", settings.recordings_folder)
    for group, options in (("engine", settings.engine), ("live", settings.live)):
        for key, value in asdict(options).items():
            store.setValue(f"{group}/{key}", value)
    store.setValue("window/geometry", settings.window_geometry)
    store.setValue("window/state", settings.window_state)
    store.sync()


def open_store(path: str | None = None) -> QSettings:
    """The user's settings (platform default place), or an INI file at `path` (tests, portable use)."""
    if path:
        return QSettings(path, QSettings.IniFormat)
    return QSettings("FlashTalk", "FlashTalk Studio")
