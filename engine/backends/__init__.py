"""Backend registry: names to lazily imported classes, so the puppet never pulls in torch."""
from __future__ import annotations

import importlib

from engine.backends.base import Backend, BackendOptions, BackendUnavailable
from engine.protocol.backend_names import DEFAULT_BACKEND, BackendName

_REGISTRY = {
    BackendName.PUPPET: ("engine.backends.puppet", "PuppetBackend"),
    BackendName.FLASHTALK: ("engine.backends.flashtalk", "FlashTalkBackend"),
}
__all__ = ["DEFAULT_BACKEND", "backend_names", "create_backend"]


def backend_names() -> list[str]:
    return [str(name) for name in _REGISTRY]  # plain strings: argparse shows choices with repr()


def backend_class(name: str) -> type[Backend]:
    """The class of backend `name`, its module imported now; BackendUnavailable (one line) if it cannot be."""
    if name not in _REGISTRY:
        raise BackendUnavailable(f"unknown backend {name!r}: choose one of {', '.join(_REGISTRY)}")
    module_name, class_name = _REGISTRY[name]
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise BackendUnavailable(
            f"the {name} backend needs packages that are not installed ({exc.name}): "
            f"pip install 'flashtalk-studio[{name}]'") from None
    return getattr(module, class_name)


def create_backend(name: str, options: BackendOptions | None = None) -> Backend:
    return backend_class(name)(options or BackendOptions())
