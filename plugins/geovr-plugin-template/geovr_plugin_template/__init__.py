"""Template geovr plugin (see README.md)."""
