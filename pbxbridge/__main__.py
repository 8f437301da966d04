"""``python -m pbxbridge``."""

from pbxbridge.cli import main

main()
