"""The HTTP entry point: the /v1 API and identity."""
