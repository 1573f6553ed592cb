"""The virtual camera's size, rate and backend from the studio's QSettings (`virtual_camera/*`).

Unset or hand-broken keys fall back to VirtualCameraConfig's defaults."""
from __future__ import annotations

from dataclasses import fields

from PySide6.QtCore import QSettings

from studio.outputs.virtual_camera import VirtualCameraConfig

_KEYS = ("width", "height", "fps", "backend", "device")


def load_camera_config(store: QSettings) -> VirtualCameraConfig:
    defaults = VirtualCameraConfig()
    values = {}
    for f in fields(VirtualCameraConfig):
        if f.name not in _KEYS or not store.contains(f"virtual_camera/{f.name}"):
            continue
        raw = store.value(f"virtual_camera/{f.name}")
        if f.name in ("backend", "device"):
            values[f.name] = str(raw) or None
            continue
        try:
            values[f.name] = int(raw) if int(raw) > 0 else getattr(defaults, f.name)
        except (TypeError, ValueError):
            pass
    return VirtualCameraConfig(**values)
