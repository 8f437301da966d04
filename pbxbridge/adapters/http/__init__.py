"""The daemon's small loopback HTTP server (health, later metrics and the agent page)."""
