"""status's disagreements: the records and the host tell one story, or each difference is named."""

from __future__ import annotations

from fetchml_infra.recover import disagreements

A, B = "sha-1a2b3c4", "sha-5d6e7f8"


def test_one_story_has_no_disagreement() -> None:
    assert disagreements(config_image=A, deployed=A, running=A, chain_to=A, locks=[]) == []


def test_each_difference_is_named() -> None:
    found = disagreements(config_image=B, deployed=A, running=B, chain_to=A, locks=["pulumi (pid 7)"])
    assert found == [
        "stale engine lock: pulumi (pid 7)",
        f"containers run {B} but the audit chain's last move is to {A}",
        f"containers run {B} but the last completed update deployed {A}",
        f"config image {B} is not deployed (deployed: {A})",
    ]


def test_an_app_down_or_mixed_is_a_disagreement() -> None:
    assert disagreements(config_image=A, deployed=A, running=None, chain_to=A, locks=[]) == [
        "the app containers are not all running one image"
    ]


def test_a_never_deployed_stack_has_nothing_to_disagree_with() -> None:
    assert disagreements(config_image=A, deployed=None, running=A, chain_to=None, locks=[]) == []
