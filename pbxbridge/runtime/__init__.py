"""Runtime plumbing of the daemon: settings, logging, live rules and overrides."""
