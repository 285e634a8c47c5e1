"""The ``correctnet`` command line.

Each subcommand lives in its own module under :mod:`correctnet.commands` and
registers itself with :func:`register`. Library errors become one clear line
on standard error and a non-zero exit, never a traceback.
"""

from __future__ import annotations

import argparse
import importlib
import sys

from correctnet import __version__

#: Subcommand modules under ``correctnet.commands``, in the order ``--help`` lists them.
COMMAND_MODULES: tuple[str, ...] = ("train", "simulate", "sweep", "compensate", "reproduce")

#: Exit code for errors the user can fix (bad arguments, missing files).
EXIT_USAGE = 2


class OneLineParser(argparse.ArgumentParser):
    """An ``ArgumentParser`` whose errors are one line on standard error, exit code 2.

    argparse prints the whole usage block before each error; here the error names the
    command and points at ``--help`` instead (``--help`` still prints the usage). Subcommand
    parsers inherit this class through ``add_subparsers``.
    """

    def error(self, message: str) -> None:  # type: ignore[override]
        """Print ``PROG: error: MESSAGE (see PROG --help)`` and exit with :data:`EXIT_USAGE`."""
        message = " ".join(message.split())
        self.exit(EXIT_USAGE, f"{self.prog}: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every registered subcommand.

    Returns:
        The parser; each subcommand sets ``func`` on its namespace.
    """
    parser = OneLineParser(
        prog="correctnet",
        description=(
            "Simulate neural networks on RRAM crossbars and recover their accuracy "
            "with CorrectNet (Lipschitz error suppression + digital error compensation)."
        ),
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"correctnet {__version__}")
    subparsers = parser.add_subparsers(title="commands", metavar="COMMAND")
    for name in COMMAND_MODULES:
        module = importlib.import_module(f"correctnet.commands.{name}")
        module.register(subparsers)
    return parser


def _user_errors() -> tuple[type[BaseException], ...]:
    """Exception types shown as one line instead of a traceback."""
    from mapping.errors import MappingError
    from xbar.errors import XbarError

    from correctnet.errors import CorrectNetError

    return (CorrectNetError, MappingError, XbarError, FileNotFoundError)


def main(argv: list[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name; ``None`` reads ``sys.argv``.

    Returns:
        The process exit code (0 on success).
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "func"):
        parser.print_help()
        return 0
    try:
        return int(args.func(args) or 0)
    except KeyboardInterrupt:
        hint = getattr(args, "interrupt_hint", "rerun the same command to continue")
        print(f"correctnet: interrupted; {hint}", file=sys.stderr)
        return 130
    except _user_errors() as exc:
        print(f"correctnet: error: {exc}", file=sys.stderr)
        return EXIT_USAGE


if __name__ == "__main__":
    sys.exit(main())
