"""Which passphrase protects a stack, what prod and HIPAA refuse, and how `init` reads secrets (pure parts)."""

from __future__ import annotations

from pathlib import Path

import pytest

from fetchml_infra import passphrase, secrets_init
from fetchml_infra.config import ConfigError, parse

DEV = {"PULUMI_CONFIG_PASSPHRASE": passphrase.DEV_PASSPHRASE}
SECRETS = {
    "minioRootUser": "fetchml-admin",
    "minioRootPassword": "correct-horse-battery",
    "minioAppSecretKey": "k" * 12,
    "postgresPassword": "p" * 12,
}


def test_the_passphrase_pulumi_uses_is_the_one_judged(tmp_path: Path) -> None:
    private = tmp_path / "passphrase"
    private.write_text(" a-real-one \n")
    assert passphrase.effective(DEV) == passphrase.DEV_PASSPHRASE
    assert passphrase.effective({"PULUMI_CONFIG_PASSPHRASE_FILE": str(private)}) == "a-real-one"
    # Pulumi takes PULUMI_CONFIG_PASSPHRASE first: a file set after sourcing scripts/env.sh changes nothing.
    assert passphrase.uses_dev(None, {**DEV, "PULUMI_CONFIG_PASSPHRASE_FILE": str(private)})
    dev_file = tmp_path / "dev"
    dev_file.write_text(passphrase.DEV_PASSPHRASE + "\n")
    assert passphrase.uses_dev(None, {"PULUMI_CONFIG_PASSPHRASE_FILE": str(dev_file)})
    assert passphrase.effective({"PULUMI_CONFIG_PASSPHRASE_FILE": str(tmp_path / "missing")}) is None
    # A KMS secrets provider leaves the passphrase unused, whatever the environment says.
    assert not passphrase.uses_dev({"secretsprovider": "awskms://alias/x"}, DEV)


@pytest.mark.parametrize(
    ("environment", "compliance", "refused"),
    [("prod", "hipaa", True), ("staging", "hipaa", True), ("staging", "none", False)],
)
def test_prod_and_hipaa_stacks_refuse_the_development_passphrase(
    environment: str, compliance: str, refused: bool
) -> None:
    values = {"image": "sha-1a2b3c4", "environment": environment, "complianceMode": compliance, **SECRETS}
    if environment == "prod":
        values["autoRollback"] = "false"
    if not refused:
        parse("s", values, frozenset(SECRETS), dev_passphrase=True)
        return
    with pytest.raises(ConfigError) as err:
        parse("s", values, frozenset(SECRETS), dev_passphrase=True)
    assert "must not keep its secrets under the development passphrase" in str(err.value)
    assert "PULUMI_CONFIG_PASSPHRASE_FILE" in str(err.value) and "Fix with" not in str(err.value)
    parse("s", values, frozenset(SECRETS), dev_passphrase=False)  # a private passphrase: fine


def secrets_file(tmp_path: Path, text: str, mode: int = 0o600) -> Path:
    path = tmp_path / "prod.secrets"
    path.write_text(text)
    path.chmod(mode)
    return path


def test_a_secrets_file_is_read_only_when_only_its_owner_can_read_it(tmp_path: Path) -> None:
    path = secrets_file(tmp_path, "# prod\nminioRootUser=fetchml-admin\nminioRootPassword = s3cret-enough \n")
    assert secrets_init.parse_file(path) == {"minioRootUser": "fetchml-admin", "minioRootPassword": "s3cret-enough"}
    path.chmod(0o644)
    with pytest.raises(ValueError, match=r"can be read by others \(mode 644\).*chmod 600"):
        secrets_init.parse_file(path)


def test_a_bad_secrets_file_names_every_problem_and_no_value(tmp_path: Path) -> None:
    text = "minioRootUser=fetchml-admin\nminioRootPasword=typo-value-1\nminioRootUser=again-value\nnoequals\n"
    text += "minioRootPassword=short\n"
    with pytest.raises(ValueError) as err:
        secrets_init.parse_file(secrets_file(tmp_path, text))
    message = str(err.value)
    assert "line 2: 'minioRootPasword' is not a secret of this program" in message
    assert "line 3: minioRootUser is given twice" in message
    assert "line 4: expected KEY=VALUE" in message
    assert "line 5: minioRootPassword: expected at least 8 characters, saw 5" in message
    assert message.endswith("nothing was set")
    for value in ("fetchml-admin", "typo-value-1", "again-value", "short"):
        assert value not in message


def test_init_generates_the_app_key_and_never_overwrites_without_rotate() -> None:
    given = {"minioRootUser": "fetchml-admin", "minioRootPassword": "s3cret-enough"}
    to_set, problems = secrets_init.plan(given, set(), rotate=False)
    assert problems == [] and set(to_set) == {*given, "minioAppSecretKey", "postgresPassword"}
    assert len(to_set["minioAppSecretKey"]) >= 32 and len(to_set["postgresPassword"]) >= 32
    again, problems = secrets_init.plan(given, set(to_set), rotate=False)
    assert problems == ["minioRootPassword, minioRootUser: already set on the stack; to replace them, pass --rotate"]
    rotated, problems = secrets_init.plan({"minioRootPassword": "n3w-s3cret"}, set(to_set), rotate=True)
    assert problems == [] and set(rotated) == {"minioRootPassword", "minioAppSecretKey"}  # a new app key too
    # The database keeps the password it was initialised with: never rotated, and refused when given.
    _, problems = secrets_init.plan({"postgresPassword": "n3w-p4ssword"}, set(to_set), rotate=True)
    assert problems == ["postgresPassword: cannot be rotated here; the database keeps the password it was made with"]
    _, problems = secrets_init.plan({"minioRootUser": "fetchml-admin"}, set(), rotate=False)
    assert problems == ["minioRootPassword: required, but neither set on the stack nor given"]


def test_init_refuses_the_development_passphrase_for_prod_only() -> None:
    prod = {"config": {"fetchml:environment": "prod", "fetchml:complianceMode": "hipaa"}}
    staging = {"config": {"fetchml:environment": "staging"}}
    refused = secrets_init.refusal("prod", prod, DEV)
    assert refused is not None and refused.endswith("nothing was created or set")
    assert secrets_init.refusal("staging", staging, DEV) is None
    assert secrets_init.refusal("prod", prod, {"PULUMI_CONFIG_PASSPHRASE": "private"}) is None
