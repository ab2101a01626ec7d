"""Adapters that plug kapflow into calendars and notification channels."""
