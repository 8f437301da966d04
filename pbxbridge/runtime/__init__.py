"""Runtime plumbing of the daemon.

Settings, logging, live rules and overrides, and the systemd notification protocol.
"""
