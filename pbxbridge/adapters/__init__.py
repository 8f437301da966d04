"""Adapters between pbxbridge's core and the outside world (Asterisk ARI, AMI, MQTT, ...)."""
