"""The ``cdr`` command line (typer + rich). Commands are thin: parse, build, call, render."""
