"""Stack config validation: every bad value is refused with a message naming the key, what was expected and
what was seen; good values become plain frozen settings."""

from __future__ import annotations

import dataclasses

import pytest

from fetchml_infra.config import ConfigError, parse, split_project_keys
from fetchml_infra.config_reader import Secret

SECRETS = frozenset({"minioRootUser", "minioRootPassword", "minioAppSecretKey", "postgresPassword"})


def good(**overrides: str) -> dict[str, str]:
    values = {
        "image": "sha-1a2b3c4",
        "environment": "staging",
        "minioRootUser": "fetchml-admin",
        "minioRootPassword": "correct-horse-battery",
        "minioAppSecretKey": "app-secret-key-long-enough",
        "postgresPassword": "postgres-password-long-enough",
    }
    values.update(overrides)
    return values


def test_defaults_follow_the_procedure() -> None:
    cfg = parse("staging", good(), SECRETS)
    assert cfg.api_image == "ghcr.io/jfraeysd/fetchml-api:sha-1a2b3c4"
    assert cfg.worker_image == "ghcr.io/jfraeysd/fetchml-worker:sha-1a2b3c4"
    assert cfg.health_url == "http://127.0.0.1:9101/health"
    assert cfg.bind_address == "127.0.0.1"
    assert cfg.auto_rollback is True  # staging rolls back by itself
    assert cfg.compliance_mode == "none"
    assert cfg.worker_replicas == 1
    assert cfg.audit_log == ".state/audit/staging.audit.log"


def test_prod_defaults_to_manual_rollback() -> None:
    cfg = parse("prod", good(environment="prod", complianceMode="hipaa"), SECRETS)
    assert cfg.auto_rollback is False
    assert cfg.compliance_mode == "hipaa"


def test_config_is_frozen_and_secrets_do_not_print() -> None:
    cfg = parse("staging", good(), SECRETS)
    with pytest.raises(dataclasses.FrozenInstanceError):
        cfg.image = "sha-5d6e7f8"  # type: ignore[misc]
    assert "correct-horse-battery" not in repr(cfg)
    assert cfg.minio_root_password == Secret("correct-horse-battery")


def test_project_namespace_is_stripped_and_other_namespaces_ignored() -> None:
    raw = {"fetchml:image": "sha-1a2b3c4", "docker:host": "unix:///var/run/docker.sock"}
    assert split_project_keys(raw) == {"image": "sha-1a2b3c4"}


BAD = [
    ("image missing", {"image": None}, "image: required (sha- followed by 7 to 40 lowercase hex digits)"),
    (
        "image latest",
        {"image": "latest"},
        "image: expected sha- followed by 7 to 40 lowercase hex digits, saw 'latest'",
    ),
    ("image short", {"image": "sha-abc12"}, "saw 'sha-abc12'"),
    ("image upper", {"image": "sha-ABCDEF1"}, "saw 'sha-ABCDEF1'"),
    ("image too long", {"image": "sha-" + "a" * 41}, "image: expected sha- followed by 7 to 40"),
    ("environment", {"environment": "production"}, "environment: expected one of staging | prod, saw 'production'"),
    ("compliance", {"complianceMode": "HIPAA"}, "complianceMode: expected one of none | hipaa, saw 'HIPAA'"),
    ("autoRollback", {"autoRollback": "yes"}, "autoRollback: expected true or false, saw 'yes'"),
    ("prod auto rollback", {"environment": "prod", "autoRollback": "true"}, "autoRollback: expected false on a prod"),
    (
        "prod without hipaa",
        {"environment": "prod", "complianceMode": "none"},
        "complianceMode: expected hipaa on a prod stack (prod runs HIPAA), saw 'none'",
    ),
    ("prod hipaa by default? no", {"environment": "prod"}, "complianceMode: expected hipaa on a prod stack"),
    ("health port text", {"healthPort": "http"}, "healthPort: expected a number from 1 to 65535, saw 'http'"),
    ("health port range", {"healthPort": "70000"}, "healthPort: expected a number from 1 to 65535, saw '70000'"),
    ("health path", {"healthPath": "health"}, "healthPath: expected a path like /health, saw 'health'"),
    ("timeout", {"healthTimeoutSeconds": "0"}, "healthTimeoutSeconds: expected a number from 1.0 to 900.0, saw '0'"),
    ("replicas", {"workerReplicas": "0"}, "workerReplicas: expected a number from 1 to 16, saw '0'"),
    ("bind address", {"bindAddress": "localhost:80"}, "bindAddress: expected an IP address such as 127.0.0.1"),
    ("redis latest", {"redisImage": "redis:latest"}, "redisImage: expected an image pinned to a tag other than latest"),
    ("minio untagged", {"minioImage": "minio/minio"}, "minioImage: expected an image pinned"),
    ("api repo tagged", {"apiRepository": "ghcr.io/x/api:v1"}, "apiRepository: expected an image repository"),
    ("same ports", {"apiHostPort": "9000"}, "expected four different ports"),
    ("reason pipe", {"deployReason": "oops | forged=1"}, "deployReason: expected up to 200 characters without '|'"),
    ("audit newline", {"auditLog": "a\nb"}, "auditLog: expected up to 200 characters without '|' or line breaks"),
    ("denied list", {"deniedImages": "sha-9c0ffee"}, "deniedImages: expected a JSON list of sha-<hex> tags"),
    (
        "denied image",
        {"image": "sha-9c0ffee", "deniedImages": '["sha-9c0ffee"]'},
        "fetchml-infra deploy --stack staging --image sha-9c0ffee --allow-denied",
    ),
    ("unknown key", {"imageTag": "sha-1a2b3c4"}, "imageTag: not a setting of this program"),
    ("password missing", {"minioRootPassword": None}, "minioRootPassword: required as a secret"),
    ("password short", {"minioRootPassword": "short"}, "minioRootPassword: expected at least 8 characters, saw 5"),
    ("sink no bucket", {"auditSink": "http://127.0.0.1:9190"}, "auditSink: expected http(s)://host[:port]/bucket"),
    ("sink s3 url", {"auditSink": "s3://audit"}, "auditSink: expected http(s)://host[:port]/bucket"),
    ("sink plain http off loopback", {"auditSink": "http://10.0.0.5:9000/audit"}, "auditSink: expected https://"),
    ("signers", {"auditSigners": "laptop"}, "auditSigners: expected name:key pairs"),
    ("retention", {"auditRetentionDays": "0"}, "auditRetentionDays: expected a number from 1 to 36500, saw '0'"),
    (
        "webhook",
        {"notifyWebhook": "ftp://x"},
        "notifyWebhook: expected an http(s)://host[:port]/path URL, saw 7 characters starting 'ftp:/'",
    ),
    ("webhook plain", {"notifyWebhook": "https://hooks.test/T0/tok"}, "notifyWebhook: expected a secret"),
    ("webhook not echoed", {"notifyWebhook": "https://h:x/T0/t0ken"}, "saw 20 characters starting 'https'"),
]


@pytest.mark.parametrize(("overrides", "message"), [b[1:] for b in BAD], ids=[b[0] for b in BAD])
def test_bad_config_is_refused_with_a_message_naming_the_key(overrides: dict[str, str | None], message: str) -> None:
    values = {k: v for k, v in {**good(), **overrides}.items() if v is not None}
    with pytest.raises(ConfigError) as err:
        parse("staging", values, SECRETS)
    assert message in str(err.value)
    assert "nothing was changed" in str(err.value)


def test_plain_secret_is_refused_without_echoing_it() -> None:
    with pytest.raises(ConfigError) as err:
        parse("staging", good(), frozenset({"minioRootUser"}))
    text = str(err.value)
    assert "minioRootPassword: expected a secret, saw a plain value" in text
    assert "`fetchml-infra init --stack staging --secrets-file FILE`" in text  # never a value on a command line
    assert "correct-horse-battery" not in text


def test_every_problem_is_reported_at_once() -> None:
    with pytest.raises(ConfigError) as err:
        parse("staging", good(image="latest", workerReplicas="99", environment="dev"), SECRETS)
    assert [p.split(":")[0] for p in err.value.problems] == ["image", "environment", "workerReplicas"]


def test_public_bind_needs_an_explicit_allowance() -> None:
    with pytest.raises(ConfigError) as err:
        parse("staging", good(bindAddress="0.0.0.0"), SECRETS)
    assert "bindAddress: expected a loopback address (127.0.0.1 or ::1), saw '0.0.0.0'" in str(err.value)
    cfg = parse("staging", good(bindAddress="0.0.0.0", allowPublicBind="true"), SECRETS)
    assert cfg.allow_public_bind is True
    assert cfg.health_url == "http://127.0.0.1:9101/health"  # checked from this host all the same
    assert parse("staging", good(bindAddress="::1"), SECRETS).health_url == "http://[::1]:9101/health"


def test_a_problem_that_names_its_fix_gets_no_generic_advice() -> None:
    with pytest.raises(ConfigError) as denied:
        parse("staging", good(image="sha-9c0ffee", deniedImages='["sha-9c0ffee"]'), SECRETS)
    assert "--allow-denied" in str(denied.value) and "pulumi config set <key>" not in str(denied.value)
    with pytest.raises(ConfigError) as typo:
        parse("staging", good(environment="production"), SECRETS)
    assert str(typo.value).endswith("Fix with `pulumi config set <key> <value> --stack staging` and run again.")
