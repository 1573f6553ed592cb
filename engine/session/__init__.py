"""Sessions: the audio timeline, chunk scheduling and the outbox between backend and socket."""
from engine.session.audio_ring import AudioRing
from engine.session.live_session import ChunkOut, LiveSession, SessionLimits, SessionState, SessionStats

__all__ = ["AudioRing", "ChunkOut", "LiveSession", "SessionLimits", "SessionState", "SessionStats"]
