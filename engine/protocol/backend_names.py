"""The backends an engine can run, by the name the command line, the wire and the studio use."""
from __future__ import annotations

from enum import StrEnum


class BackendName(StrEnum):
    PUPPET = "puppet"  # CPU, no weights to download
    FLASHTALK = "flashtalk"  # the SoulX-FlashTalk diffusion model (GPU)


DEFAULT_BACKEND = BackendName.PUPPET
