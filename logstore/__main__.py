"""``python -m logstore``: the same as the ``logstore`` command."""

from .cli import main

main()
