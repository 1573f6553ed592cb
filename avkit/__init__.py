"""Shared, Qt-free and torch-free audio/video I/O used by both the engine and the studio."""
