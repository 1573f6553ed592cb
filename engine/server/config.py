"""What an engine server is started with: where it listens, which backend, and its bounds."""
from __future__ import annotations

from dataclasses import dataclass, field

from engine.backends import DEFAULT_BACKEND
from engine.backends.base import BackendOptions
from engine.session import SessionLimits


@dataclass
class ServerConfig:
    address: str
    backend: str = DEFAULT_BACKEND
    backend_options: BackendOptions = field(default_factory=BackendOptions)
    client_timeout_s: float = 10.0  # a session's client silent this long is gone
    metrics_interval_s: float = 0.5
    max_clients: int = 64  # connections that said hello remembered; the least recently seen goes first
    max_pending_replies: int = 256  # per peer; a peer that never reads loses its oldest replies
    allow_remote: bool = False  # tcp on a non-loopback interface
    limits: SessionLimits = field(default_factory=SessionLimits)
    progress_interval_s: float = 1.0  # a session being prepared reports its stage this often
    max_pending_checks: int = 4  # portrait checks waiting for the checker thread; more are answered busy
