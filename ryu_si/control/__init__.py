"""The control core: every change (service), its store, liveness and settings."""
