"""Notifiers: deliver a ``kapflow.ports.Message`` over one channel.

Each module imports at most one third-party library, so installing the
``notify`` extra is only needed for ``apprise``:

- ``smtp.SmtpNotifier``: email through an SMTP server (standard library).
- ``apprise.AppriseNotifier``: SMS, chat and more through apprise URLs.
- ``webhook.WebhookNotifier``: signed JSON POSTs (Standard Webhooks); ``verify_webhook`` for receivers.
- ``memory.MemoryNotifier``: records messages, simulates outages (tests).
"""
