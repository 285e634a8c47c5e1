"""Subcommands of the ``correctnet`` command line, one module each: argparse and printing.

The work is done by the library subpackages (``training``, ``sweep``, ``compensation``,
``study``, ...); a command parses its arguments, calls them and prints the result.

Every module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed ``argparse.Namespace``; returns an exit code).
"""
