"""A small Django project on redkit (see ../README.md)."""
