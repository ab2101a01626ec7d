"""Workflows kapflow ships with."""
