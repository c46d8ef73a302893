"""The REST API, its OpenAPI description, token auth and the ryu-si command line."""
