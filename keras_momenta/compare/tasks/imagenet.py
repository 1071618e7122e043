"""Runner tasks: imagenet (filled in by its own change)."""

TASKS = []
