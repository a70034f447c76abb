"""The two consoles every command prints through: standard output and standard error.

Their own module so that the error path (`common`) and the progress display (`progress`) share
them without importing each other.
"""

from __future__ import annotations

import shutil

from rich.console import Console

# wide enough for the frontier table when the output is a pipe or a file
console = Console(width=shutil.get_terminal_size((150, 24)).columns, emoji=False)
err = Console(stderr=True, emoji=False)
