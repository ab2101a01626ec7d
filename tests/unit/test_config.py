"""Settings: unknown keys are errors with a suggestion, secrets come only from the environment, SMTP is encrypted."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from kapflow.audit.signing import generate_key
from kapflow.bootstrap import audit_signer
from kapflow.config import SmtpSettings, parse_settings
from kapflow.errors import ConfigError

ENV = {"KAPFLOW_SMTP_PASSWORD": "synthetic-smtp-password", "KAPFLOW_SMS_URLS": "json://127.0.0.1/sms",
       "KAPFLOW_WEBHOOK_SECRET": "whsec_synthetic", "KAPFLOW_CALDAV_PASSWORD": "synthetic-dav-password"}
EMAIL = {"host": "smtp.practice.example", "port": 587, "sender": "care@practice.example",
         "username": "kapflow", "password_env": "KAPFLOW_SMTP_PASSWORD"}


def problems(raw: dict[str, Any]) -> list[str]:
    with pytest.raises(ConfigError) as caught:
        parse_settings(raw, "kapflow.toml", ENV)
    return list(caught.value.problems)


def test_a_complete_settings_file_with_secrets_from_the_environment_is_read() -> None:
    """Every table with its secrets named by *_env keys: read, with the secrets resolved."""
    settings = parse_settings({
        "database": "sqlite:///k.db", "timezone": "UTC",
        "email": EMAIL,
        "channels": {"sms": {"urls_env": "KAPFLOW_SMS_URLS"}},
        "webhook": {"url": "https://hooks.example/k", "secret_env": "KAPFLOW_WEBHOOK_SECRET"},
        "calendar": {"caldav_url": "https://dav.example/", "username": "k", "password_env": "KAPFLOW_CALDAV_PASSWORD",
                     "name": "kap"},
        "worker": {"interval_seconds": 1, "lease_seconds": 60, "max_attempts": 3, "batch": 10, "in_flight": 4},
    }, "kapflow.toml", ENV)
    assert settings.worker.in_flight == 4
    assert settings.email == SmtpSettings("smtp.practice.example", 587, "care@practice.example", "kapflow",
                                          "synthetic-smtp-password", starttls=True)
    assert settings.channels == {"sms": ("json://127.0.0.1/sms",)}
    assert settings.webhook is not None and settings.webhook.secret == "whsec_synthetic"
    assert settings.calendar is not None and settings.calendar.password == "synthetic-dav-password"


@pytest.mark.parametrize(("table", "typo", "meant"), [
    ("email", "start_tls", "starttls"),
    ("email", "hostname", "host"),
    ("worker", "max_attempt", "max_attempts"),
    ("calendar", "ics_foldr", "ics_folder"),
    ("webhook", "secret_enviroment", "secret_env"),
    ("maildir", "folders", "folder"),
])
def test_an_unknown_key_in_a_table_is_an_error_with_a_suggestion(table: str, typo: str, meant: str) -> None:
    """A typo (``start_tls = true``) is not silently ignored: the error names the key and the likely one."""
    base: dict[str, dict[str, Any]] = {
        "email": dict(EMAIL), "worker": {}, "calendar": {"ics_folder": "/tmp/cal"},
        "webhook": {"url": "https://hooks.example/k", "secret_env": "KAPFLOW_WEBHOOK_SECRET"},
        "maildir": {"folder": "/tmp/mail"},
    }
    raw = {table: {**base[table], typo: True}}
    found = problems(raw)
    assert any(f"{table}.{typo}" in p and f"did you mean '{meant}'?" in p for p in found), found


def test_an_unknown_channel_key_and_top_level_key_are_errors_too() -> None:
    found = problems({"timezon": "UTC", "channels": {"sms": {"url_env": "KAPFLOW_SMS_URLS"}}})
    assert any("timezon" in p and "did you mean 'timezone'?" in p for p in found), found
    assert any("channels.sms.url_env" in p and "did you mean 'urls_env'?" in p for p in found), found


@pytest.mark.parametrize(("raw", "where", "use"), [
    ({"email": {**EMAIL, "password": "inline-synthetic"}}, "email.password", "email.password_env"),
    ({"webhook": {"url": "https://hooks.example/k", "secret": "inline-synthetic"}}, "webhook.secret",
     "webhook.secret_env"),
    ({"channels": {"sms": {"urls": ["json://inline-synthetic/"]}}}, "channels.sms.urls", "channels.sms.urls_env"),
    ({"calendar": {"caldav_url": "https://dav.example/", "username": "k", "password": "inline-synthetic"}},
     "calendar.password", "calendar.password_env"),
])
def test_an_inline_secret_is_refused_naming_the_env_key(raw: dict[str, Any], where: str, use: str) -> None:
    """Secrets come only from the environment: an inline one is refused, and the error does not repeat it."""
    found = problems(raw)
    assert any(p.startswith(where) and use in p for p in found), found
    assert not any("inline-synthetic" in p for p in found)


def test_smtp_is_encrypted_by_default() -> None:
    """STARTTLS unless said otherwise; port 465 is implicit TLS."""
    settings = parse_settings({"email": EMAIL}, "k.toml", ENV)
    assert settings.email is not None and settings.email.starttls is True
    implicit = parse_settings({"email": {**EMAIL, "port": 465}}, "k.toml", ENV)
    assert implicit.email is not None and implicit.email.port == 465


def test_cleartext_smtp_is_only_for_an_explicitly_allowed_loopback_relay() -> None:
    """starttls = false needs allow_cleartext_loopback = true and a loopback host."""
    plain = {**EMAIL, "starttls": False}
    assert any("allow_cleartext_loopback" in p for p in problems({"email": plain}))
    remote = problems({"email": {**plain, "allow_cleartext_loopback": True}})
    assert any("loopback" in p and "smtp.practice.example" in p for p in remote), remote
    for host in ("127.0.0.1", "::1", "localhost"):
        local = parse_settings({"email": {**plain, "host": host, "allow_cleartext_loopback": True}}, "k.toml", ENV)
        assert local.email is not None and local.email.starttls is False
        assert local.email.allow_cleartext_loopback is True


def test_the_audit_signing_key_comes_from_the_environment_or_a_private_file(tmp_path: Path) -> None:
    """The key's text is never a setting: the environment (named or default variable), or a 0600 file."""
    private, _public = generate_key("practice-example")
    found = parse_settings({"audit": {"signing_key_env": "PRACTICE_AUDIT_KEY"}}, "kapflow.toml",
                           {"PRACTICE_AUDIT_KEY": private})
    signer = audit_signer(found)
    assert signer is not None and signer.name == "practice-example" and private not in repr(signer)
    assert audit_signer(parse_settings({}, "kapflow.toml", {"KAPFLOW_AUDIT_SIGNING_KEY": private})) is not None
    assert audit_signer(parse_settings({}, "kapflow.toml", {})) is None
    inline = problems({"audit": {"signing_key": private}})
    assert any("audit.signing_key" in p and "signing_key_env" in p for p in inline)
    assert not any(private in p for p in inline)
    key_file = tmp_path / "audit.key"
    key_file.write_text(private)
    key_file.chmod(0o644)
    with pytest.raises(ConfigError, match="chmod 600"):
        audit_signer(parse_settings({"audit": {"signing_key_file": str(key_file)}}, "kapflow.toml", {}))
    key_file.chmod(0o600)
    assert audit_signer(parse_settings({"audit": {"signing_key_file": str(key_file)}}, "kapflow.toml", {}))


def test_cors_origins_are_exact_origins_never_a_wildcard() -> None:
    ok = parse_settings({"serve": {"cors_origins": ["https://pms.example", "http://127.0.0.1:3000"]}}, "k.toml", {})
    assert ok.serve.cors_origins == ("https://pms.example", "http://127.0.0.1:3000")
    assert any("cors_origins" in p for p in problems({"serve": {"cors_origins": ["*"]}}))
    assert any("cors_origins" in p for p in problems({"serve": {"cors_origins": "https://pms.example"}}))


BILLING: dict[str, Any] = {
    "no_show_fee": "75.00", "late_cancel_hours": 48,
    "practice": {"name": "Sample Therapy, PLLC", "address": ["1 Example Way", "Springfield, OR 97477"],
                 "phone": "(555) 010-2000", "tax_id": "12-3456789", "npi": "1245319599"},
    "clinicians": {"np-rowan": {"name": "Rowan Sample", "credentials": "PMHNP-BC", "npi": "1234567893"}},
}


def test_billing_settings_give_the_fee_policy_and_who_the_practice_is() -> None:
    """[billing]: the missed-visit fees as exact amounts, the practice and each clinician by id."""
    billing = parse_settings({"billing": BILLING}, "k.toml", ENV).billing
    policy = billing.fee_policy()
    assert (str(policy.no_show_fee), policy.late_cancel_fee, policy.late_cancel_hours) == ("75.00", None, 48)
    assert billing.practice is not None and billing.practice.npi == "1245319599"
    assert billing.clinicians["np-rowan"].credentials == "PMHNP-BC"
    assert parse_settings({}, "k.toml", ENV).billing.fee_policy().no_show_fee is None  # no fee by default


@pytest.mark.parametrize(("change", "says"), [
    ({"no_show_fee": 75}, 'billing.no_show_fee must be an amount in dollars and cents as text, e.g. "75.00"'),
    ({"no_show_fee": "7.505"}, "billing.no_show_fee must be an amount"),
    ({"practice": {**BILLING["practice"], "npi": "1245319590"}}, "billing.practice.npi fails its check digit"),
    ({"practice": {**BILLING["practice"], "tax_id": "123456789"}},
     "billing.practice.tax_id must be the practice's EIN"),
    ({"practice": {k: v for k, v in BILLING["practice"].items() if k != "phone"}},
     "billing.practice.phone is required"),
    ({"practice": {**BILLING["practice"], "address": "1 Example Way"}}, "billing.practice.address must be a list"),
    ({"clinicians": {"np-rowan": {"name": "Rowan Sample", "npi": "1234567893"}}},
     "billing.clinicians.np-rowan.credentials is required"),
    ({"clinicians": {"np rowan!": {"name": "R", "credentials": "X", "npi": "1234567893"}}},
     "billing.clinicians.np rowan! must be a table named by the clinician's id"),
    ({"tax": "x"}, "unknown setting billing.tax"),
])
def test_a_wrong_billing_setting_is_named(change: dict[str, Any], says: str) -> None:
    """Each wrong [billing] setting is a problem naming it: a superbill never carries a blank or bad field."""
    found = problems({"billing": {**BILLING, **change}})
    assert any(says in p for p in found), found


@pytest.mark.parametrize(("table", "key", "value", "says"), [
    ("worker", "in_flight", 0, "worker.in_flight must be a whole number from 1 to 16"),
    ("worker", "in_flight", 17, "worker.in_flight must be a whole number from 1 to 16"),
    ("worker", "in_flight", 2.5, "worker.in_flight must be a whole number from 1 to 16"),
    ("worker", "in_flight", True, "worker.in_flight must be a whole number from 1 to 16"),
    ("worker", "batch", 0, "worker.batch must be a whole number from 1 to 10000"),
    ("worker", "lease_seconds", 60.5, "worker.lease_seconds must be a whole number from 1 to 86400"),
    ("serve", "workers", 65, "serve.workers must be a whole number from 1 to 64"),
    ("worker", "interval_seconds", 0, "worker.interval_seconds must be a number from 0.05 to 3600"),
])
def test_a_count_out_of_range_or_not_whole_is_named(table: str, key: str, value: object, says: str) -> None:
    """A count must be a whole number in its range: 2.5 messages in flight is a typo, never read as 2."""
    assert says in problems({table: {key: value}})
