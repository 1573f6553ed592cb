"""Checkpoints: the official folder layout, its validation, DiT loading, tiny test checkpoints."""
from engine.flashtalk.weights.checkpoint_layout import CheckpointError, validate_model_dir
from engine.flashtalk.weights.dit_loader import load_dit
from engine.flashtalk.weights.tiny_checkpoint import make_tiny

__all__ = ["CheckpointError", "load_dit", "make_tiny", "validate_model_dir"]
