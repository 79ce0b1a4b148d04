"""Words the operator reads: a mistyped stack points at the likely one, and counts agree with their nouns."""

from __future__ import annotations

from pathlib import Path

from fetchml_infra import audit
from fetchml_infra.config import parse
from fetchml_infra.stack import rollback_advice
from fetchml_infra.workspace import unknown_stack


def test_a_mistyped_stack_lists_the_stacks_and_guesses_before_suggesting_a_new_one() -> None:
    said = unknown_stack("prdo", ["staging", "prod"], Path("/srv/fetchml"))
    assert said == (
        "--stack: no stack named 'prdo' in /srv/fetchml (its stacks: prod, staging); did you mean 'prod'? "
        "A new stack is created with `pulumi stack init prdo`."
    )
    assert "did you mean" not in unknown_stack("canary", ["staging", "prod"], Path("/p"))
    assert "(it has no stacks yet)" in unknown_stack("prod", [], Path("/p"))


def test_chain_lengths_are_counted_in_words() -> None:
    assert [audit.count_entries(n) for n in (0, 1, 2)] == ["0 entries", "1 entry", "2 entries"]


def test_a_failed_gate_advises_a_rollback_only_where_the_cli_will_not_do_it() -> None:
    secrets = {
        "minioRootUser": "fetchml-admin",
        "minioRootPassword": "correct-horse-battery",
        "minioAppSecretKey": "app-secret-key-long-enough",
        "postgresPassword": "postgres-password-long-enough",
    }
    base = {"image": "sha-1a2b3c4", **secrets}
    staging = parse("staging", {**base, "environment": "staging"}, frozenset(secrets))
    prod = parse("prod", {**base, "environment": "prod", "complianceMode": "hipaa"}, frozenset(secrets))
    assert rollback_advice(prod) == "roll back with: fetchml-infra rollback --stack prod --reason health-check-failure"
    assert rollback_advice(staging).startswith(
        "fetchml-infra deploy rolls back by itself (autoRollback); after a plain"
    )
