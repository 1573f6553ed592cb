"""Options and errors shared by the `flashtalk` sub-commands.

The backend options are not written out here: each flag, default, choice and help text comes from
the BackendOptions field that holds it (engine/protocol/engine_options.py).
"""
from __future__ import annotations

import argparse
from dataclasses import Field, fields

from engine.backends import DEFAULT_BACKEND, backend_names
from engine.protocol.engine_options import BackendOptions


class UserError(Exception):
    """A mistake the user can fix; printed as one line, exit code 2."""


def add_backend_choice(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--backend", choices=backend_names(), default=DEFAULT_BACKEND,
                        help="puppet: CPU, no weights; flashtalk: the diffusion model (GPU) "
                             "(default: %(default)s)")


def add_backend_options(parser: argparse.ArgumentParser, command: str) -> None:
    """--backend and every BackendOptions flag that `command` offers."""
    add_backend_choice(parser)
    for option in _offered(command):
        meta = option.metadata
        if meta["type"] is bool:
            parser.add_argument(meta["flag"], dest=_dest(option), action="store_true", help=meta["help"])
            continue
        choices = [str(c) for c in meta["choices"]] if meta["choices"] else None  # argparse shows repr()
        bare = {"nargs": "?", "const": meta["const"]} if meta["const"] is not None else {}
        parser.add_argument(meta["flag"], dest=_dest(option), type=meta["type"], default=option.default,
                            choices=choices, metavar=meta["metavar"], help=meta["help"], **bare)


def backend_options(args: argparse.Namespace) -> BackendOptions:
    """The BackendOptions the parsed flags say (fields a command does not offer keep their default)."""
    given = {f.name: getattr(args, _dest(f)) for f in fields(BackendOptions) if hasattr(args, _dest(f))}
    try:
        return BackendOptions(**given).check()
    except ValueError as exc:
        raise UserError(str(exc)) from None


def _offered(command: str) -> list[Field]:
    return [f for f in fields(BackendOptions) if command in f.metadata["commands"]]


def _dest(option: Field) -> str:
    """argparse's attribute for a flag: '--rank-timeout' -> 'rank_timeout'."""
    return option.metadata["flag"].removeprefix("--").replace("-", "_")


MAX_SIDE = 16384  # pixels: beyond every backend's limit, and far inside what the wire's integers carry


def parse_size(text: str | None) -> tuple[int | None, int | None]:
    if not text:
        return None, None
    try:
        w, h = (int(v) for v in text.lower().split("x"))
    except ValueError:
        raise UserError(f"--size {text!r} is not WIDTHxHEIGHT, e.g. 512x512") from None
    if not (1 <= w <= MAX_SIDE and 1 <= h <= MAX_SIDE):
        raise UserError(f"--size {text}: width and height must be 1 to {MAX_SIDE} pixels, e.g. 512x512")
    return w, h
