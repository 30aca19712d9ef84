"""The `fedledger` command line (Typer). `app` is the CLI, `main` its console entry point."""

from .app import app, main

__all__ = ["app", "main"]
