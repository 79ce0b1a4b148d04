"""The project's documents stand alone: no link or path points outside the repository."""

from __future__ import annotations

import re

from fetchml_infra.offline import REPO_ROOT

LINK = re.compile(r"\]\(([^)\s]+)\)")


def test_no_document_points_outside_the_repository() -> None:
    docs = [p for p in REPO_ROOT.rglob("*.md") if not {".venv", ".state", ".git"} & set(p.parts)]
    assert REPO_ROOT / "docs" / "rollback.md" in docs
    for doc in docs:
        text = doc.read_text()
        assert "../shared" not in text, f"{doc} names ../shared, which is not in a clone of the project"
        for target in LINK.findall(text):
            if re.match(r"^[a-z]+://|^#|^mailto:", target):
                continue
            resolved = (doc.parent / target.split("#")[0]).resolve()
            assert resolved.is_relative_to(REPO_ROOT) and resolved.exists(), f"{doc}: broken link {target}"
