"""``python -m sicc`` is the ``sicc`` command."""

from .cli import run

run()
