"""Multi-GPU execution of the FlashTalk model: sequence-parallel attention, parallel VAE."""
from engine.flashtalk.parallel.sequence_parallel import NoParallel, SequenceParallel

__all__ = ["NoParallel", "SequenceParallel"]
