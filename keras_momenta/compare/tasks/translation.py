"""Runner tasks: translation (filled in by its own change)."""

TASKS = []
