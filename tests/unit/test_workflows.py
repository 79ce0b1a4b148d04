"""The CI/CD workflows in .forgejo/workflows: actionlint-clean, calling our scripts and CLI rather than copying
their logic, and scripts/pr-comment against a real HTTP server on 127.0.0.1 that fakes the comments API."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import threading
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

import pytest
import yaml

REPO = Path(__file__).resolve().parents[2]
WORKFLOWS = REPO / ".forgejo" / "workflows"
PR_COMMENT = REPO / "scripts" / "pr-comment"
MARKER = "<!-- fetchml-infra-preview -->"
TOKEN = "test-token"
ACTIONLINT_VERSION = "v1.7.12"


# ---------------------------------------------------------------------------------------------- actionlint


@pytest.fixture(scope="session")
def actionlint() -> str:
    """actionlint as scripts/bootstrap installs it (on PATH through the offline environment)."""
    found = shutil.which("actionlint")
    if found is None:
        pytest.fail("actionlint is not on PATH: run scripts/bootstrap (it builds it from its Go module)")
    return found


def workflow_files() -> list[Path]:
    return sorted(WORKFLOWS.glob("*.yml"))


def test_the_three_workflows_exist():
    assert [p.name for p in workflow_files()] == ["deploy-prod.yml", "deploy-staging.yml", "preview.yml"]


@pytest.mark.parametrize("path", workflow_files(), ids=lambda p: p.name)
def test_actionlint_accepts(actionlint, path):
    # actionlint runs shellcheck on every run: block when shellcheck is on PATH.
    result = subprocess.run([actionlint, "-no-color", str(path)], cwd=REPO, capture_output=True, text=True)
    assert result.returncode == 0, result.stdout + result.stderr


def test_actionlint_is_not_vacuous(actionlint, tmp_path):
    bad = tmp_path / "bad.yml"
    steps = "      - run: echo ${{ github.nope }}\n      - run: cd $RUNNER_TEMP/x\n"
    bad.write_text("on: push\njobs:\n  j:\n    runs-on: ubuntu-latest\n    steps:\n" + steps)
    result = subprocess.run([actionlint, "-no-color", str(bad)], capture_output=True, text=True)
    assert result.returncode == 1 and "nope" in result.stdout
    if shutil.which("shellcheck"):
        assert "SC2086" in result.stdout  # unquoted variable: shellcheck ran on the run: blocks


# ---------------------------------------------------------------------------------- what the workflows call


def load(name: str) -> dict[Any, Any]:
    workflow: dict[Any, Any] = yaml.safe_load((WORKFLOWS / name).read_text())
    return workflow


def runs(job: dict[str, Any]) -> list[str]:
    return [s["run"] for s in job["steps"] if "run" in s]


def step_calling(job: dict[str, Any], command: str) -> dict[str, Any]:
    matches: list[dict[str, Any]] = [s for s in job["steps"] if command in s.get("run", "")]
    assert len(matches) == 1, f"expected one step running {command!r}, saw {len(matches)}"
    return matches[0]


NAMES = ("preview.yml", "deploy-staging.yml", "deploy-prod.yml")
ALL_JOBS = [(name, job_id) for name in NAMES for job_id in load(name)["jobs"]]


@pytest.mark.parametrize(("name", "job_id"), ALL_JOBS)
def test_jobs_use_the_cli_after_bootstrap_and_never_pulumi_itself(name, job_id):
    job = load(name)["jobs"][job_id]
    commands = runs(job)
    for run in commands:
        assert not re.search(r"(^|[\s;&|(])pulumi\s", run), f"{name}:{job_id} runs pulumi directly:\n{run}"
        assert "docker " not in run, f"{name}:{job_id} drives docker itself:\n{run}"
    uses_cli = [i for i, run in enumerate(commands) if "fetchml-infra " in run]
    if uses_cli:
        bootstrap = [i for i, run in enumerate(commands) if "scripts/bootstrap" in run]
        assert bootstrap and bootstrap[0] < uses_cli[0], f"{name}:{job_id} uses fetchml-infra before scripts/bootstrap"
    assert job["runs-on"] == "ubuntu-latest"


def test_preview_comments_both_stacks_once_through_pr_comment():
    wf = load("preview.yml")
    assert "pull_request" in wf[True]  # PyYAML reads the key `on` as True
    preview, comment = wf["jobs"]["preview"], wf["jobs"]["comment"]
    for stack in ("staging", "prod"):
        step_calling(preview, f"fetchml-infra preview --stack {stack} --markdown")
    # Only prod's preview gets prod's passphrase, as a file; staging keeps the development default.
    prod = step_calling(preview, "fetchml-infra preview --stack prod --markdown")
    assert prod["env"] == {"PULUMI_CONFIG_PASSPHRASE_FILE": "${{ runner.temp }}/pulumi-passphrase"}
    assert "env" not in step_calling(preview, "fetchml-infra preview --stack staging --markdown")
    assert comment["needs"] == "preview"
    assert "scripts/pr-comment" in step_calling(comment, "scripts/pr-comment")["run"]
    assert wf["concurrency"]["cancel-in-progress"] is True  # two runs must not race to post two comments


def test_only_the_comment_job_may_write():
    for name in NAMES:
        wf = load(name)
        assert wf["permissions"] == {"contents": "read"}, name
        for job_id, job in wf["jobs"].items():
            if (name, job_id) == ("preview.yml", "comment"):
                assert job["permissions"] == {"contents": "read", "pull-requests": "write"}
            else:
                assert "permissions" not in job, f"{name}:{job_id} widens the workflow's permissions"


def test_staging_deploys_the_commit_image_and_always_prints_history_and_audit():
    wf = load("deploy-staging.yml")
    assert wf[True]["push"]["branches"] == ["main"]
    job = wf["jobs"]["deploy"]
    deploy = step_calling(job, "fetchml-infra deploy")["run"]
    assert 'image="sha-${GITHUB_SHA::7}"' in deploy
    assert 'fetchml-infra deploy --stack staging --image "$image"' in deploy
    assert 'exit "$rc"' in deploy  # exit 3 (rolled back) fails the job
    after = step_calling(job, "fetchml-infra history --stack staging")
    assert after["if"].startswith("always()")
    assert 'fetchml-infra audit tail --log "$AUDIT_LOG"' in after["run"]


@pytest.mark.parametrize("action", ["deploy", "rollback"])
def test_prod_jobs_wait_for_production_approval_and_report(action):
    wf = load("deploy-prod.yml")
    inputs = wf[True]["workflow_dispatch"]["inputs"]
    assert inputs["image"]["required"] is True and inputs["action"]["options"] == ["deploy", "rollback"]
    assert "reason" in inputs
    job = wf["jobs"][action]
    assert job["environment"] == "production"
    assert job["if"] == f"inputs.action == '{action}'"
    main = step_calling(job, f"fetchml-infra {action} --stack prod")
    assert main["env"] == {"IMAGE": "${{ inputs.image }}", "REASON": "${{ inputs.reason }}"}  # no ${{ }} in run:
    assert "${{" not in main["run"]
    for command in ("fetchml-infra status --stack prod", 'fetchml-infra audit verify --log "$AUDIT_LOG"'):
        assert step_calling(job, command)["if"].startswith("always()")
    # The prod secrets' passphrase comes from a forge secret, as a file only the runner user reads, before any
    # command; the development default would be refused (and must never be what protects prod).
    steps = job["steps"]
    secret = step_calling(job, "PULUMI_CONFIG_PASSPHRASE_FILE=")
    assert secret["env"] == {"PASSPHRASE": "${{ secrets.PULUMI_CONFIG_PASSPHRASE_PROD }}"}
    assert "umask 077" in secret["run"] and "GITHUB_ENV" in secret["run"]
    assert steps.index(secret) < steps.index(main)
    assert "PULUMI_CONFIG_PASSPHRASE:" not in (REPO / ".forgejo" / "workflows" / "deploy-prod.yml").read_text()
    if action == "rollback":  # a HIPAA rollback carries its incident report, written from the inputs
        report = step_calling(job, '>"$RUNNER_TEMP/incident.txt"')
        assert report["env"] == {
            "WHY": "${{ inputs.why_rolled_back }}",
            "IMPACT": "${{ inputs.impact_on_phi }}",
            "RISK": "${{ inputs.exposure_risk }}",
        }
        assert '--incident "$RUNNER_TEMP/incident.txt"' in main["run"]
        assert steps.index(report) < steps.index(main)


def test_deploys_to_one_stack_never_overlap():
    groups = {}
    for name, stack in (("deploy-staging.yml", "staging"), ("deploy-prod.yml", "prod")):
        concurrency = load(name)["concurrency"]
        assert concurrency["cancel-in-progress"] is False, name
        groups[stack] = concurrency["group"]
    assert groups == {"staging": "fetchml-stack-staging", "prod": "fetchml-stack-prod"}


# ----------------------------------------------------------------------- scripts/pr-comment on a fake forge


class FakeForge(ThreadingHTTPServer):
    """The three comment endpoints of a GitHub-compatible API, for one pull request (owner/repo #7).
    paging='github' honours per_page/page; paging='none' returns every comment on every page, as Forgejo does."""

    def __init__(self, paging: str = "github") -> None:
        super().__init__(("127.0.0.1", 0), Handler)
        self.paging = paging
        self.comments: list[dict[str, Any]] = []
        self.requests: list[str] = []
        self.refuse_writes = False

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.server_address[1]}"

    def add(self, body: str) -> dict[str, Any]:
        comment = {"id": 1000 + len(self.comments), "body": body, "html_url": f"{self.url}/c/{len(self.comments)}"}
        self.comments.append(comment)
        return comment


class Handler(BaseHTTPRequestHandler):
    server: FakeForge
    ISSUE = "/repos/owner/repo/issues/7/comments"

    def log_message(self, *args: object) -> None:
        pass

    def reply(self, status: int, payload: object) -> None:
        data = json.dumps(payload).encode()
        self.send_response(status)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def handle_one(self) -> None:
        self.server.requests.append(f"{self.command} {urlsplit(self.path).path}")
        if self.headers.get("Authorization") != f"token {TOKEN}":
            return self.reply(401, {"message": "bad token"})
        path, query = urlsplit(self.path).path, parse_qs(urlsplit(self.path).query)
        if self.command != "GET" and self.server.refuse_writes:
            return self.reply(403, {"message": "Resource not accessible by integration"})
        if self.command == "GET" and path == self.ISSUE:
            if self.server.paging == "none":
                return self.reply(200, self.server.comments)
            per_page, page = int(query.get("per_page", ["30"])[0]), int(query.get("page", ["1"])[0])
            return self.reply(200, self.server.comments[(page - 1) * per_page : page * per_page])
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length", 0))) or b"{}").get("body")
        if self.command == "POST" and path == self.ISSUE:
            return self.reply(201, self.server.add(body))
        match = re.fullmatch(r"/repos/owner/repo/issues/comments/(\d+)", path)
        target = [c for c in self.server.comments if match and c["id"] == int(match[1])]
        if self.command == "PATCH" and target:
            target[0]["body"] = body
            return self.reply(200, target[0])
        return self.reply(404, {"message": "not found"})

    do_GET = do_POST = do_PATCH = handle_one


@pytest.fixture(params=["github", "none"])
def forge(request):
    server = FakeForge(paging=request.param)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    yield server
    server.shutdown()
    server.server_close()


def pr_comment(forge: FakeForge, body: str, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "GITHUB_API_URL": forge.url,
        "GITHUB_REPOSITORY": "owner/repo",
        "PR_NUMBER": "7",
        "GITHUB_TOKEN": TOKEN,
        "NO_PROXY": "127.0.0.1",
    }
    return subprocess.run([str(PR_COMMENT), *args], input=body, env=env, capture_output=True, text=True, timeout=60)


def test_pr_comment_creates_once_then_updates_in_place(forge):
    human = forge.add(f"LGTM, but what does the preview say? (it starts with {MARKER})")
    first = pr_comment(forge, "## staging\nsha-1111111 -> sha-2222222\n")
    assert first.returncode == 0, first.stderr
    assert [r.split()[0] for r in forge.requests] == ["GET", "POST"]
    created = forge.comments[1]
    assert created["body"] == f"{MARKER}\n## staging\nsha-1111111 -> sha-2222222\n"

    second = pr_comment(forge, "## staging\nsha-1111111 -> sha-3333333\n")
    assert second.returncode == 0, second.stderr
    assert forge.requests[-1] == f"PATCH /repos/owner/repo/issues/comments/{created['id']}"
    assert len(forge.comments) == 2  # updated, not duplicated
    assert created["body"].endswith("sha-3333333\n")
    assert human["body"] == f"LGTM, but what does the preview say? (it starts with {MARKER})"  # left alone
    assert "updated comment" in second.stdout

    writes = len(forge.requests)
    again = pr_comment(forge, "## staging\nsha-1111111 -> sha-3333333\n")
    assert again.returncode == 0 and len(forge.requests) == writes + 1  # same body: a read, no write


def test_pr_comment_finds_its_comment_past_the_first_page(forge):
    for i in range(130):
        forge.add(f"chatter {i}")
    mine = forge.add(f"{MARKER}\nold preview")
    forge.add("one more")
    result = pr_comment(forge, "new preview")
    assert result.returncode == 0, result.stderr
    assert forge.requests[-1] == f"PATCH /repos/owner/repo/issues/comments/{mine['id']}"
    assert mine["body"] == f"{MARKER}\nnew preview" and len(forge.comments) == 132
    assert sum(r.startswith("GET") for r in forge.requests) == 2  # and stops when a server ignores paging


def test_pr_comment_dry_run_writes_nothing(forge):
    result = pr_comment(forge, "preview body", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert "would POST" in result.stdout and "preview body" in result.stdout
    assert forge.comments == [] and {r.split()[0] for r in forge.requests} == {"GET"}
    forge.add(f"{MARKER}\nold")
    assert "would PATCH" in pr_comment(forge, "newer", "--dry-run").stdout
    assert forge.comments[0]["body"] == f"{MARKER}\nold"


def test_pr_comment_reports_a_refused_write(forge):
    forge.refuse_writes = True
    result = pr_comment(forge, "body")
    assert result.returncode == 1
    assert "HTTP 403" in result.stderr and "not accessible" in result.stderr


def test_pr_comment_reads_the_body_from_a_file(forge, tmp_path):
    (tmp_path / "body.md").write_text("from a file\n")
    result = pr_comment(forge, "", "--body-file", str(tmp_path / "body.md"))
    assert result.returncode == 0, result.stderr
    assert forge.comments[0]["body"] == f"{MARKER}\nfrom a file\n"


def test_pr_comment_refuses_missing_settings():
    env = {"PATH": os.environ["PATH"]}
    result = subprocess.run([str(PR_COMMENT)], input="x", env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 2 and "missing --api-url, --repo, --pr" in result.stderr
