"""``python -m sessionstore``: the same command as ``sessionstore``."""

from .cli import main

main()
