"""Checkpoints: the official folder layout (torch-free names), its validation, DiT loading, tiny test checkpoints.

Import the module you need; this package face imports nothing, so reading the layout's names
(the doctor does, on installs without torch) never pulls in torch.
"""
