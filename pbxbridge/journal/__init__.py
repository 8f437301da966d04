"""The call journal: every call's life, stored durably, and the reports built on it."""
