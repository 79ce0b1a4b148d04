"""Stack history and the audit chain decide where a rollback goes and whether a move is a rollback."""

from __future__ import annotations

from dataclasses import dataclass

from fetchml_infra.history import (
    accounted_for,
    classify,
    last_entry,
    last_passed,
    parse_history,
    rollback_target,
    update_message,
)


def row(image: str | None, result: str = "succeeded", kind: str = "update", message: str = "") -> dict[str, object]:
    config = {"fetchml:image": image} if image else {}
    return {"kind": kind, "result": result, "startTime": "2026-11-27T10:00:00Z", "config": config, "message": message}


def test_parse_reads_image_action_and_actor_newest_first() -> None:
    raw = [
        row("sha-5d6e7f8", message=update_message("rollback", "sha-5d6e7f8", "alice", "health-check-failure")),
        {**row(None), "config": {"fetchml:image": {"value": "sha-1a2b3c4", "secret": False}}},
    ]
    newest, oldest = parse_history(raw)
    assert (newest.image, newest.action, newest.actor) == ("sha-5d6e7f8", "rollback", "alice")
    assert oldest.image == "sha-1a2b3c4"
    assert oldest.action is None and oldest.actor is None


def test_target_is_the_newest_successful_image_other_than_the_current() -> None:
    updates = parse_history(
        [
            row("sha-9c0ffee", result="failed"),  # the broken deploy being rolled back from
            row("sha-5d6e7f8"),
            row("sha-5d6e7f8"),  # a config-only update on the same image
            row("sha-1a2b3c4"),
        ]
    )
    assert rollback_target(updates, "sha-9c0ffee") == "sha-5d6e7f8"
    assert rollback_target(updates, "sha-5d6e7f8") == "sha-1a2b3c4"


def test_no_target_when_nothing_else_ever_succeeded() -> None:
    updates = parse_history([row("sha-9c0ffee", result="failed"), row("sha-1a2b3c4"), row(None, kind="preview")])
    assert rollback_target(updates, "sha-1a2b3c4") is None
    assert rollback_target([], None) is None


def test_refresh_and_destroy_rows_are_not_deployments() -> None:
    updates = parse_history([row("sha-5d6e7f8", kind="refresh"), row("sha-1a2b3c4")])
    assert rollback_target(updates, "sha-9c0ffee") == "sha-1a2b3c4"


@dataclass(frozen=True)
class E:
    action: str
    outcome: str
    to_image: str
    stack: str = "staging"


def test_first_deploy_comes_from_nothing() -> None:
    assert classify([], "staging", "sha-1a2b3c4") == ("deploy", "none")


def test_moving_back_to_an_image_that_passed_is_a_rollback() -> None:
    chain = [E("deploy", "success", "sha-1a2b3c4"), E("deploy", "success", "sha-5d6e7f8")]
    assert classify(chain, "staging", "sha-1a2b3c4") == ("rollback", "sha-5d6e7f8")
    assert classify(chain, "staging", "sha-0000aaa") == ("deploy", "sha-5d6e7f8")


def test_after_a_failed_gate_the_failed_image_is_what_we_roll_back_from() -> None:
    chain = [
        E("deploy", "success", "sha-5d6e7f8"),
        E("deploy", "failure", "sha-9c0ffee"),
    ]
    assert classify(chain, "staging", "sha-5d6e7f8") == ("rollback", "sha-9c0ffee")
    # A failed image never counts as "deployed successfully earlier".
    assert classify(chain, "staging", "sha-9c0ffee") == ("deploy", "sha-9c0ffee")


def test_other_stacks_and_adoption_entries_are_ignored() -> None:
    chain = [
        E("adopt", "success", "", "staging"),
        E("deploy", "success", "sha-1a2b3c4", "prod"),
        E("deploy", "success", "sha-5d6e7f8", "staging"),
    ]
    assert classify(chain, "staging", "sha-1a2b3c4") == ("deploy", "sha-5d6e7f8")
    last = last_entry(chain, "prod")
    assert last is not None and last.to_image == "sha-1a2b3c4"
    assert last_entry(chain, "dev") is None


def test_last_passed_skips_failures_other_stacks_and_adoption() -> None:
    chain = [
        E("adopt", "success", "", "staging"),
        E("deploy", "success", "sha-1a2b3c4", "staging"),
        E("deploy", "success", "sha-5d6e7f8", "prod"),
        E("deploy", "failure", "sha-9c0ffee", "staging"),
    ]
    passed = last_passed(chain, "staging")
    assert passed is not None and passed.to_image == "sha-1a2b3c4"
    assert last_passed(chain, "dev") is None
    # After a failed gate the chain accounts for the failed release and the one that still serves.
    assert accounted_for(chain, "staging") == ("sha-9c0ffee", "sha-1a2b3c4")
    assert accounted_for(chain, "dev") == (None, None)


def test_history_rows_label_plain_pulumi_up_rollbacks() -> None:
    from fetchml_infra.history import label_actions

    updates = parse_history(
        [
            row("sha-1a2b3c4"),  # plain `pulumi config set image ... && pulumi up` back to A
            row("sha-5d6e7f8", message=update_message("rollback", "sha-5d6e7f8", "ci", "health-check-failure")),
            row("sha-9c0ffee", result="failed"),
            row("sha-5d6e7f8"),
            row("sha-5d6e7f8"),
            row("sha-1a2b3c4"),
        ]
    )
    actions = [r.action for r in label_actions(updates)]
    assert actions == ["rollback", "rollback", "deploy", "config", "deploy", "deploy"]
    assert label_actions(updates)[1].actor == "ci"
