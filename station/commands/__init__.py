"""Subcommands of ``linestation``: one module each, with ``register(subparsers)``.

A module adds its parser(s) and sets ``func=handler`` where ``handler(args, data_dir) -> int``
(the exit status). New commands are listed in :data:`station.cli.COMMAND_MODULES`.
"""
