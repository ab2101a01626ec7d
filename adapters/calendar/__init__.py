"""Calendars: keep one event per appointment (``kapflow.ports.Calendar``).

- ``ics.IcsCalendar``: one .ics file per event in a folder, plus a subscribable feed.
- ``caldav.CalDAVCalendar``: a calendar on a CalDAV server (RFC 4791).
- ``memory.MemoryCalendar``: in memory (tests).

``icalendar`` is imported in ``_ical`` only; both file and CalDAV adapters
speak RFC 5545 through it.
"""
