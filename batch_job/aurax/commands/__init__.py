"""`aurax` subcommands, one module each (see aurax.cli)."""
