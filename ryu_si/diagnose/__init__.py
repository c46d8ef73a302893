"""Diagnostics: traces of the compiled pipeline and their check against the switch."""
