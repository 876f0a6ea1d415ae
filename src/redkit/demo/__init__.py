"""The demo behind ``redkit demo``."""
