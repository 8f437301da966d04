"""Node state kept outside the routing rules: the manual overrides store."""
