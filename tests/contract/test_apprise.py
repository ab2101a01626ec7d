"""AppriseNotifier beyond the contract: URL validation that names no token, recipients, keys, import hygiene."""

from __future__ import annotations

import json
import logging
import subprocess
import sys
import uuid

import pytest
from contract.servers import HttpRecorder, SmtpServer

from kapflow.adapters.notify.apprise import AppriseNotifier
from kapflow.errors import AdapterConfigError, DeliveryFailed
from kapflow.ports import Message


def text(recipient: str = "+15555550100") -> Message:
    return Message(
        key=f"timer:case-{uuid.uuid4().hex[:8]}:reminder_24h:sms",
        channel="sms",
        recipient=recipient,
        subject="Appointment tomorrow",
        body="Reminder: your appointment is tomorrow at 15:00. Reply to reschedule.",
    )


@pytest.mark.parametrize(
    ("url", "scheme"),
    [
        ("nosuchservice://S3CRET-T0KEN@host", "nosuchservice"),
        ("json://", "json"),
        ("no scheme at all S3CRET-T0KEN", "(no scheme)"),
    ],
)
def test_check_names_the_scheme_and_never_the_rest(url: str, scheme: str) -> None:
    """The error says which kind of URL is wrong without repeating tokens or passwords."""
    with pytest.raises(AdapterConfigError) as caught:
        AppriseNotifier("sms", url).check()
    assert scheme in str(caught.value)
    assert "S3CRET" not in str(caught.value) and "T0KEN" not in str(caught.value)


def test_check_refuses_an_empty_url_list() -> None:
    with pytest.raises(AdapterConfigError, match="no URL"):
        AppriseNotifier("sms", []).check()


def test_check_checks_every_url(http_recorder: HttpRecorder) -> None:
    """One bad URL among good ones is found."""
    good = f"json://127.0.0.1:{http_recorder.port}/ok"
    with pytest.raises(AdapterConfigError):
        AppriseNotifier("chat", [good, "nosuchservice://x"]).check()
    AppriseNotifier("chat", [good, good.replace("/ok", "/ok2")]).check()


def test_the_recipient_placeholder_is_filled_and_quoted(http_recorder: HttpRecorder) -> None:
    """``{recipient}`` in a URL becomes the message's recipient, URL-quoted."""
    path = f"/sms/{uuid.uuid4().hex}"
    notifier = AppriseNotifier("sms", f"json://127.0.0.1:{http_recorder.port}{path}/{{recipient}}")
    notifier.check()
    notifier.send(text(recipient="+1 555/0100"))
    [request] = [r for r in http_recorder.requests if r.path.startswith(path)]
    assert request.path.split("?")[0] == f"{path}/+1%20555%2F0100"


def test_a_message_without_recipient_for_a_recipient_url_fails_permanently(http_recorder: HttpRecorder) -> None:
    notifier = AppriseNotifier("sms", f"json://127.0.0.1:{http_recorder.port}/sms/{{recipient}}")
    with pytest.raises(DeliveryFailed) as caught:
        notifier.send(text(recipient=""))
    assert caught.value.permanent is True


def test_every_url_receives_the_message(http_recorder: HttpRecorder) -> None:
    """Two URLs, two deliveries, each with the key header."""
    base = f"json://127.0.0.1:{http_recorder.port}/multi/{uuid.uuid4().hex}"
    msg = text()
    AppriseNotifier("chat", [base + "/a", base + "/b"]).send(msg)
    got = [r for r in http_recorder.requests if r.header("X-Kapflow-Message-Key") == msg.key]
    assert sorted(r.path.rsplit("/", 1)[1].split("?")[0] for r in got) == ["a", "b"]
    assert {json.loads(r.body)["message"] for r in got} == {msg.body}


def test_one_failing_url_of_several_fails_the_send(http_recorder: HttpRecorder) -> None:
    """A partial delivery is reported as a (retryable) failure, counting the failed services."""
    base = f"json://127.0.0.1:{http_recorder.port}"
    with pytest.raises(DeliveryFailed) as caught:
        AppriseNotifier("chat", [base + "/fine", base + "/status/500/broken"]).send(text())
    assert caught.value.permanent is False
    assert "1 of 2" in caught.value.reason


def test_email_through_apprise_reaches_the_recipient_with_the_key(smtp_server: SmtpServer) -> None:
    """mailto:// to a plain SMTP server: envelope recipient, subject and key header arrive."""
    url = f"mailto://127.0.0.1:{smtp_server.port}?from=reminders@practice.example&to={{recipient}}&mode=insecure"
    msg = text(recipient="sam.client@example.org")
    AppriseNotifier("email", url).send(msg)
    [mail] = smtp_server.with_key(msg.key)
    assert mail.rcpt_tos == ("sam.client@example.org",)
    assert mail.subject == msg.subject


def test_importing_and_using_the_adapter_raises_no_warning() -> None:
    """apprise's imghdr DeprecationWarning stays inside the adapter's import, even with warnings as errors."""
    code = (
        "import kapflow.adapters.notify.apprise as a\n"
        "n = a.AppriseNotifier('email', 'mailto://127.0.0.1:2525?from=a@b.example&to=c@d.example')\n"
        "n.check()\n"
        "a.apprise.Apprise().add('json://127.0.0.1/x')\n"
    )
    done = subprocess.run(
        [sys.executable, "-W", "error", "-c", code], capture_output=True, text=True, timeout=60, cwd="/"
    )
    assert done.returncode == 0, done.stderr[-2000:]
    assert "Warning" not in done.stderr


def test_apprise_logs_neither_recipients_nor_tokens(
    smtp_server: SmtpServer, http_recorder: HttpRecorder, caplog: pytest.LogCaptureFixture
) -> None:
    """apprise logs each address it sends to at INFO; through kapflow, nothing of it reaches a log.

    (At DEBUG, urllib3 logs the paths it requests: DEBUG is for a developer's machine, not a practice's.)
    """
    caplog.set_level(logging.INFO)
    url = f"mailto://127.0.0.1:{smtp_server.port}?from=reminders@practice.example&to={{recipient}}&mode=insecure"
    AppriseNotifier("email", url).send(text(recipient="sam.client@example.org"))
    with pytest.raises(DeliveryFailed):
        AppriseNotifier("chat", f"json://127.0.0.1:{http_recorder.port}/status/500/S3CRET-T0KEN").send(text())
    said = [r.getMessage() for r in caplog.records if r.name.startswith("apprise")]
    assert said, "apprise logged nothing at all: the failure above should have left a warning"
    assert all("withheld" in line for line in said)
    # Everything the sending side logged (mail.log is aiosmtpd's: the test's server, not the client).
    logged = "\n".join(r.getMessage() for r in caplog.records if r.name != "mail.log")
    assert "sam.client" not in logged and "S3CRET" not in logged
