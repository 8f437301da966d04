"""pbxbridge: one telephone service centre answering for many public authorities."""

__version__ = "0.1.0"
