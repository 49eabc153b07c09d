"""One module per ``mixbit`` subcommand, each with ``register(subparsers)``."""
