"""CPU "puppet" backend: dlib landmarks + an audio-driven warp of the portrait (no weights to download)."""
from engine.backends.puppet.puppet_backend import PuppetBackend, PuppetStream

__all__ = ["PuppetBackend", "PuppetStream"]
