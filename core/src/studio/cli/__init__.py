"""The ``studio`` command line (Typer). Importing it imports no torch."""
