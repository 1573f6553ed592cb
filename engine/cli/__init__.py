"""`flashtalk` command line: serve | render | bench | models | doctor | train.

Every user mistake ends with one line on stderr and exit code 2; nothing half-written is left.
"""
from __future__ import annotations

import argparse
import sys

from engine.cli import bench, doctor, models, render, serve, train
from engine.cli.common import UserError

COMMANDS = {"serve": serve, "render": render, "bench": bench, "models": models,
            "doctor": doctor, "train": train}


class OneLineErrorParser(argparse.ArgumentParser):
    """A usage mistake (an unknown flag, a value outside the choices) is one line and exit 2 too."""

    def error(self, message: str):
        self.exit(2, f"{self.prog}: {message}\n")


def build_parser() -> argparse.ArgumentParser:
    parser = OneLineErrorParser(prog="flashtalk", description=__doc__.splitlines()[0])
    sub = parser.add_subparsers(dest="command", required=True)
    for module in COMMANDS.values():
        module.add_parser(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return int(args.run(args) or 0)
    except UserError as exc:
        print(f"flashtalk {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"flashtalk {args.command}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
