"""The ``mixbit`` command line; one module per subcommand under ``allocator/cli/commands/``."""

from allocator.cli.main import build_parser, emit_json, main

__all__ = ["build_parser", "emit_json", "main"]
