"""The main job on the embedded default: deploy, fail, roll back and recover a FetchML stack for real.

Uses the local Docker engine, the file state backend under .state/ and the locally built images. The stack
`demo` is made afresh from Pulumi.staging.yaml (other ports and names, so it can run beside staging), and
this story is told with the operator CLI and the plain `pulumi` path:

  deploy A, enqueue a job (the worker writes its artifact with the app's own MinIO key); deploy B; deploy
  broken C (staging rolls back to B by itself); roll back to A with the CLI; go to B again with
  `pulumi config set image ... && pulumi up`.

It ends with the stack history, the audit chain verification and the status, and exits non-zero if any
step did not behave as the rollback procedure says.
"""

from __future__ import annotations

import subprocess
import sys
import time

import redis
import yaml
from minio import Minio

from fetchml_infra import offline
from fetchml_infra.offline import REPO_ROOT

ENGINE_LOG = REPO_ROOT / ".state" / "demo-engine.log"
VERBOSE = "--verbose" in sys.argv[1:]  # stream Pulumi's own output instead of keeping it in ENGINE_LOG
STACK = "demo"
A, B, C = "sha-1a2b3c4", "sha-5d6e7f8", "sha-9c0ffee"
PORTS = {"apiHostPort": "9121", "redisHostPort": "6399", "minioHostPort": "9020", "proxyAdminPort": "2039"}
ENV = offline.apply()
if not VERBOSE:
    ENV["FETCHML_ENGINE_LOG"] = str(ENGINE_LOG)


def run(*cmd: str, expect: int = 0) -> str:
    print(f"\n$ {' '.join(cmd)}", flush=True)
    done = subprocess.run(cmd, cwd=REPO_ROOT, env=ENV, text=True, stdout=subprocess.PIPE, stderr=subprocess.STDOUT)
    if cmd[0] == "pulumi" and not VERBOSE:  # the plain path: its whole output is Pulumi's own
        with open(ENGINE_LOG, "a", encoding="utf-8") as log:
            log.write(f"\n$ {' '.join(cmd)}\n{done.stdout}")
        print(f"(exit {done.returncode}; its output is in {ENGINE_LOG.relative_to(REPO_ROOT)})", flush=True)
    else:
        print(done.stdout, end="", flush=True)
    if done.returncode != expect:
        sys.exit(f"demo: `{' '.join(cmd)}` exited {done.returncode}, expected {expect}")
    return done.stdout


def fresh_stack() -> None:
    """Remove any earlier demo stack (and its retained volumes), then make it anew from staging's config."""
    listed = subprocess.run(["pulumi", "stack", "ls", "--json"], cwd=REPO_ROOT, env=ENV, capture_output=True, text=True)
    if f'"name": "{STACK}"' in listed.stdout:
        for cmd in (["state", "unprotect", "--all", "--yes"], ["destroy", "--yes", "--skip-preview"]):
            subprocess.run(["pulumi", *cmd, "--stack", STACK], cwd=REPO_ROOT, env=ENV, capture_output=True)
        subprocess.run(["pulumi", "stack", "rm", STACK, "--yes", "--force"], cwd=REPO_ROOT, env=ENV, check=True)
        old_log = REPO_ROOT / ".state" / "audit" / f"{STACK}.audit.log"
        if old_log.exists():  # a new stack starts a new chain; the old one is kept, never deleted
            old_log.rename(old_log.with_suffix(f".{int(time.time())}.archived"))
    for volume in ("redis-data", "minio-data", "postgres-data"):
        subprocess.run(["docker", "volume", "rm", f"fetchml-{STACK}-{volume}"], env=ENV, capture_output=True)
    staging = yaml.safe_load((REPO_ROOT / "Pulumi.staging.yaml").read_text())
    config = dict(staging["config"])
    config.update({f"fetchml:{k}": v for k, v in PORTS.items()})
    config.pop("fetchml:image", None)  # a new stack has no image yet: its first deploy sets it
    config["fetchml:healthTimeoutSeconds"] = "15"
    demo = {"encryptionsalt": staging["encryptionsalt"], "config": config}
    (REPO_ROOT / f"Pulumi.{STACK}.yaml").write_text(yaml.safe_dump(demo, sort_keys=True))
    run("pulumi", "stack", "init", STACK)


def seed() -> None:
    r = redis.Redis(host="127.0.0.1", port=int(PORTS["redisHostPort"]), socket_timeout=5)
    r.lpush("fetchml:queue:pending", "demo-job-1")
    for _ in range(50):
        if r.sismember("fetchml:jobs:done", "demo-job-1"):
            break
        time.sleep(0.2)
    mc = Minio(
        f"127.0.0.1:{PORTS['minioHostPort']}", secret("minioRootUser"), secret("minioRootPassword"), secure=False
    )
    written = mc.stat_object("artifacts", "jobs/demo-job-1/result.json")  # by the worker, with the app's own key
    assert written.size, "the worker wrote no artifact"
    print(
        "seeded: job demo-job-1 done by the worker, which wrote s3://artifacts/jobs/demo-job-1/result.json with "
        "the app's own MinIO key (not root's)",
        flush=True,
    )


def secret(key: str) -> str:
    """A secret config value, read without echoing it."""
    return subprocess.run(
        ["pulumi", "config", "get", key, "--stack", STACK],
        cwd=REPO_ROOT,
        env=ENV,
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()


def main() -> None:
    ENGINE_LOG.parent.mkdir(parents=True, exist_ok=True)
    ENGINE_LOG.write_text("")
    fresh_stack()
    cli = ["fetchml-infra"]
    run(*cli, "deploy", "--stack", STACK, "--image", A, "--reason", "first-release")
    seed()
    run(*cli, "deploy", "--stack", STACK, "--image", B, "--reason", "release-b")
    run(*cli, "deploy", "--stack", STACK, "--image", C, "--reason", "release-c", expect=3)
    run(*cli, "rollback", "--stack", STACK, "--to", A, "--reason", "regression-in-b")
    run("pulumi", "config", "set", "image", B, "--stack", STACK)
    run("pulumi", "up", "--yes", "--skip-preview", "--stack", STACK)
    run(*cli, "history", "--stack", STACK)
    run(*cli, "audit", "tail", "--log", str(REPO_ROOT / ".state" / "audit" / f"{STACK}.audit.log"), "-n", "6")
    run(*cli, "audit", "verify", "--log", str(REPO_ROOT / ".state" / "audit" / f"{STACK}.audit.log"))
    run(*cli, "status", "--stack", STACK)
    print("\ndemo: every step behaved as the rollback procedure says.")
    if not VERBOSE:
        print(f"demo: Pulumi's own output of every step is in {ENGINE_LOG} (scripts/demo --verbose streams it)")
    print(
        f"demo: stack '{STACK}' is still running (containers fetchml-{STACK}-*); remove it with\n"
        f"  fetchml-infra destroy --stack {STACK} --reason end-of-demo            (keeps the queue and artifacts)\n"
        f"  fetchml-infra destroy --stack {STACK} --reason end-of-demo --delete-data --confirm-stack {STACK}"
    )


if __name__ == "__main__":
    main()
