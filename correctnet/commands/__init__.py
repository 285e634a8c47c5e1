"""Subcommands of the ``correctnet`` command line, one module each.

Every module defines ``register(subparsers)``, which adds its parser and sets
``func`` (called with the parsed ``argparse.Namespace``; returns an exit code).
"""
