"""What the user chose for the engine: how to start (or reach) it and what to ask of a session.

Backend names and the GPU default come from the engine's own definition (engine.protocol); the
resolutions offered are the studio's choice. `LiveChoice` is how a live session trades quality
for keeping up, and its target latency (issue 13's latency contract).
"""
from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from engine.protocol import SessionSettings
from engine.protocol.backend_names import DEFAULT_BACKEND, BackendName
from engine.protocol.engine_options import DEFAULT_GPUS

try:  # the engine's half of the latency contract (issue 13) names these
    from engine.protocol.messages import QUALITY_AUTO, QUALITY_FIXED, TARGET_LATENCY_MARGIN_S
except ImportError:  # a protocol from before it: the same values; drop this once both halves are merged
    QUALITY_AUTO, QUALITY_FIXED, TARGET_LATENCY_MARGIN_S = "auto", "fixed", 0.5

BACKENDS = tuple(str(name) for name in BackendName)
RESOLUTIONS = ((0, 0), (256, 256), (384, 384), (512, 512), (768, 768))  # (0, 0): backend default
CHILD_CLIENT_TIMEOUT_S = 5  # a child engine drops a silent studio this fast (the studio restarts it)
QUALITY_LABELS = {QUALITY_AUTO: "Keep up (auto)", QUALITY_FIXED: "Quality first"}  # what the studio offers


@dataclass
class LiveChoice:
    quality: str = QUALITY_AUTO  # QUALITY_AUTO, QUALITY_FIXED or one of the session's profile names
    target_latency_s: float = 0.0  # capture -> presented; 0: the default (one chunk's audio + margin)

    def asked(self) -> dict:
        """The session settings this choice adds: only what differs from the engine's defaults, so an
        engine from before the latency contract (it refuses keys it does not know) still opens a
        session that asks for nothing new."""
        out: dict = {}
        if self.quality != QUALITY_AUTO:  # auto is the engine's default (a file session makes it its top profile)
            out["quality"] = self.quality
        if self.target_latency_s > 0:
            out["target_latency_s"] = float(self.target_latency_s)
        return out


@dataclass
class EngineOptions:
    backend: str = DEFAULT_BACKEND.value
    model_dir: str = ""  # SoulX-FlashTalk-14B folder (flashtalk backend)
    gpus: int = DEFAULT_GPUS
    width: int = 0  # 0: the backend's default
    height: int = 0
    steps: int = 0  # 0: the backend's default
    attach_address: str = ""  # non-empty: use an engine already running there instead of starting one
    token_file: str = ""  # for attach: the engine's token file (default: beside the socket)

    @property
    def attached(self) -> bool:
        return bool(self.attach_address)

    def problem(self) -> str:
        """Why these options cannot start an engine, known before starting one (a flashtalk engine
        would take half a minute to import its libraries and say the same); "" when none."""
        if self.attached or self.backend != BackendName.FLASHTALK:
            return ""
        if not self.model_dir:
            return ("the flashtalk backend needs its model: choose the SoulX-FlashTalk-14B folder under "
                    "Model, or use the puppet backend")
        if not Path(self.model_dir).is_dir():
            return (f"the model folder {self.model_dir} does not exist: choose the SoulX-FlashTalk-14B "
                    "folder under Model")
        return ""

    def serve_args(self, address: str) -> list[str]:
        """Arguments after `python -m engine` for a child engine listening on `address`."""
        args = ["serve", "--socket", address, "--backend", self.backend,
                "--client-timeout", str(CHILD_CLIENT_TIMEOUT_S),
                "--parent-pid", str(os.getpid())]  # the engine stops itself if the studio dies
        if self.backend != BackendName.PUPPET:
            if self.model_dir:
                args += ["--model", self.model_dir]
            args += ["--gpus", str(self.gpus)]
        return args

    def session_settings(self, mode: str = "live", live: LiveChoice | None = None) -> SessionSettings:
        settings = SessionSettings(width=self.width or None, height=self.height or None,
                                   steps=self.steps or None, mode=mode)
        for key, value in (live or LiveChoice()).asked().items():
            setattr(settings, key, value)  # sent as given: the engine checks them (one line when it refuses)
        return settings
