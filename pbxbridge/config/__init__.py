"""Routing rules: the YAML file operators edit, its validation and compilation."""

from pbxbridge.config.loader import ConfigError, Issue, load_rules, parse_rules

__all__ = ["ConfigError", "Issue", "load_rules", "parse_rules"]
