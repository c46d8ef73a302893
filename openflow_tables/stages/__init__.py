"""One module per pipeline stage; each returns the flows of its table(s)."""
