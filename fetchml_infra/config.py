"""Typed, validated stack configuration.

The stack config is read once, checked as a whole, and turned into plain frozen values before any resource
is registered. A bad value stops the program with one error that lists every problem, each naming its key,
what was expected and what was seen. ``image`` is the only key a rollback changes.
"""

from __future__ import annotations

import ipaddress
import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from fetchml_infra import passphrase
from fetchml_infra.audit.checkpoint import parse_signers
from fetchml_infra.audit.target import DEFAULT_RETENTION_DAYS, Target
from fetchml_infra.config_reader import IMAGE_TAG, Reader, Secret

PROJECT = "fetchml"
# A pinned image names a tag (not "latest") or a digest: a data-store image must not move under a volume.
PINNED_IMAGE = re.compile(
    r"^[a-z0-9][a-z0-9._/:-]*(:(?!latest$)[A-Za-z0-9_][A-Za-z0-9._-]{0,127}|@sha256:[0-9a-f]{64})$"
)
REPOSITORY = re.compile(r"^[a-z0-9]+([._-][a-z0-9]+)*(:[0-9]+)?(/[a-z0-9]+([._-][a-z0-9]+)*)*$")
NAME_PREFIX = re.compile(r"^[a-z][a-z0-9-]{0,40}$")
ENVIRONMENTS = ("staging", "prod")
COMPLIANCE_MODES = ("none", "hipaa")
TARGETS = ("docker", "swarm")  # one Docker engine, or a Swarm cluster through its manager (fetchml_infra.swarm)
DOCKER_HOST = re.compile(r"^((unix|tcp|ssh)://\S+)?$")
SECRET_KEYS = ("minioRootUser", "minioRootPassword", "minioAppSecretKey", "postgresPassword")


class ConfigError(ValueError):
    """Raised with every problem found in the stack config, one per line."""

    def __init__(self, stack: str, problems: list[str]) -> None:
        self.problems = problems
        lines = "\n".join(f"  - {p}" for p in problems)
        # A problem that names its own fix (a command in backticks) needs no generic advice after it.
        generic = any("`" not in p for p in problems)
        advice = f"\nFix with `pulumi config set <key> <value> --stack {stack}` and run again." if generic else ""
        super().__init__(f"stack '{stack}' has invalid configuration; nothing was changed:\n{lines}{advice}")


@dataclass(frozen=True)
class StackConfig:
    stack: str
    image: str
    api_repository: str
    worker_repository: str
    redis_image: str
    minio_image: str
    proxy_image: str
    postgres_image: str
    environment: str
    compliance_mode: str
    auto_rollback: bool
    health_port: int
    health_path: str
    health_timeout_seconds: float
    worker_replicas: int
    bind_address: str
    allow_public_bind: bool
    api_host_port: int
    redis_host_port: int
    minio_host_port: int
    proxy_admin_port: int  # Caddy's admin API, always on loopback
    proxy_route_dir: str  # where the proxy's route file lives on the host; "" is the checkout's .state/proxy/<stack>
    audit_log: str
    name_prefix: str
    deploy_reason: str
    denied_images: tuple[str, ...]
    minio_root_user: Secret
    minio_root_password: Secret
    minio_app_secret_key: Secret  # the app's own MinIO key (fetchml_infra.app_access)
    postgres_password: Secret  # set once: the database keeps the password it was initialised with
    force_schema: bool  # one update's override of the schema check (fetchml_infra.schema), set and cleared by the CLI
    snapshot_keep: int  # snapshots kept per stack; older ones go only with `fetchml-infra snapshots prune`
    worker_stop_grace_seconds: int  # a worker's job in flight finishes or goes back within this
    job_seconds: float  # how long a stand-in job takes (tests and benchmarks)
    audit_sink: str  # http(s)://host[:port]/bucket of the write-once sink, "" for none (fetchml_infra.audit.sink)
    audit_retention_days: int  # COMPLIANCE retention of each object in the sink
    audit_signers: str  # name:base64-key pairs whose checkpoint signatures are trusted
    notify_webhook: str  # POSTed after every rollback (fetchml_infra.notify); "" for none
    target: str = "docker"  # docker | swarm
    api_replicas: int = 2  # API tasks on a swarm (one host runs one API container per release)
    docker_host: str = ""  # the engine (on swarm: a manager) the stack is declared on; "" is $DOCKER_HOST's

    @property
    def required_compliance(self) -> str | None:
        """The compliance_mode the health check must see, or None when the stack asks for none."""
        return self.compliance_mode if self.compliance_mode != "none" else None

    @property
    def api_image(self) -> str:
        return f"{self.api_repository}:{self.image}"

    @property
    def worker_image(self) -> str:
        return f"{self.worker_repository}:{self.image}"

    def audit_log_path(self, project_dir: Path) -> str:
        """Absolute: a relative auditLog is the project's, in whichever directory the CLI or a provider runs."""
        return str((project_dir / Path(self.audit_log).expanduser()).resolve())

    @property
    def proxy_admin_host(self) -> str:
        """Loopback whatever bindAddress says: the admin API reconfigures the proxy."""
        return "::1" if self.bind_address == "::1" else "127.0.0.1"

    @property
    def proxy_admin_url(self) -> str:
        host = "[::1]" if self.proxy_admin_host == "::1" else self.proxy_admin_host
        return f"http://{host}:{self.proxy_admin_port}"

    @property
    def published_host(self) -> str:
        """The host the stack's published ports answer on, as a URL writes it."""
        return self.health_url.split("//", 1)[1].split("/", 1)[0].rsplit(":", 1)[0]

    @property
    def health_url(self) -> str:
        host = f"[{self.bind_address}]" if ":" in self.bind_address else self.bind_address
        if host in ("0.0.0.0", "[::]"):
            host = "127.0.0.1"
        return f"http://{host}:{self.api_host_port}{self.health_path}"


def parse(
    stack: str, values: Mapping[str, str], secret_keys: frozenset[str] = frozenset(), *, dev_passphrase: bool = False
) -> StackConfig:
    """Validate the raw config of ``stack`` (keys without the project prefix) into a StackConfig.

    ``secret_keys`` names the keys Pulumi holds as secrets; ``dev_passphrase``: they are protected by the
    development passphrase. Raises ConfigError listing every problem.
    """
    r = Reader(stack, values, secret_keys)
    image = r.text("image", None, IMAGE_TAG, "sha- followed by 7 to 40 lowercase hex digits")
    environment = r.choice("environment", "staging", ENVIRONMENTS)
    compliance = r.choice("complianceMode", "none", COMPLIANCE_MODES)
    repo_expected = "an image repository without a tag, such as ghcr.io/jfraeysd/fetchml-api"
    pinned_expected = "an image pinned to a tag other than latest, or to a digest"
    cfg = StackConfig(
        stack=stack,
        image=image,
        api_repository=r.text("apiRepository", "ghcr.io/jfraeysd/fetchml-api", REPOSITORY, repo_expected),
        worker_repository=r.text("workerRepository", "ghcr.io/jfraeysd/fetchml-worker", REPOSITORY, repo_expected),
        redis_image=r.text("redisImage", "fetchml-infra/redis:7.0", PINNED_IMAGE, pinned_expected),
        minio_image=r.text("minioImage", "fetchml-infra/minio:20260212-7aac2a2", PINNED_IMAGE, pinned_expected),
        proxy_image=r.text("proxyImage", "fetchml-infra/caddy:2.11.9", PINNED_IMAGE, pinned_expected),
        postgres_image=r.text("postgresImage", "fetchml-infra/postgres:15", PINNED_IMAGE, pinned_expected),
        environment=environment,
        compliance_mode=compliance,
        auto_rollback=r.boolean("autoRollback", environment == "staging"),
        health_port=r.number("healthPort", 9101, int, 1, 65535),
        health_path=r.text("healthPath", "/health", re.compile(r"^/[A-Za-z0-9._~/-]*$"), "a path like /health"),
        health_timeout_seconds=r.number("healthTimeoutSeconds", 60.0, float, 1.0, 900.0),
        worker_replicas=r.number("workerReplicas", 1, int, 1, 16),
        worker_stop_grace_seconds=r.number("workerStopGraceSeconds", 30, int, 2, 3600),
        job_seconds=r.number("jobSeconds", 0.0, float, 0.0, 3600.0),
        bind_address=r.address("bindAddress", "127.0.0.1"),
        allow_public_bind=r.boolean("allowPublicBind", False),
        api_host_port=r.number("apiHostPort", 9101, int, 1, 65535),
        redis_host_port=r.number("redisHostPort", 6379, int, 1, 65535),
        minio_host_port=r.number("minioHostPort", 9000, int, 1, 65535),
        proxy_admin_port=r.number("proxyAdminPort", 2019, int, 1, 65535),
        proxy_route_dir=r.free_text("proxyRouteDir", ""),
        audit_log=r.free_text("auditLog", f".state/audit/{stack}.audit.log"),
        name_prefix=r.text("namePrefix", f"fetchml-{stack}", NAME_PREFIX, "lowercase letters, digits and -"),
        deploy_reason=r.free_text("deployReason", ""),
        denied_images=r.tag_list("deniedImages"),
        minio_root_user=r.secret("minioRootUser"),
        minio_root_password=r.secret("minioRootPassword"),
        minio_app_secret_key=r.secret("minioAppSecretKey"),
        postgres_password=r.secret("postgresPassword"),
        force_schema=r.boolean("forceSchema", False),
        snapshot_keep=r.number("snapshotKeep", 10, int, 1, 1000),
        audit_sink=r.parsed("auditSink", "", lambda v: v and Target.parse(v)),
        audit_retention_days=r.number("auditRetentionDays", DEFAULT_RETENTION_DAYS, int, 1, 36500),
        audit_signers=r.parsed("auditSigners", "", parse_signers),
        notify_webhook=r.parsed("notifyWebhook", "", _webhook),
        target=r.choice("target", "docker", TARGETS),
        api_replicas=r.number("apiReplicas", 2, int, 1, 16),
        docker_host=r.text("dockerHost", "", DOCKER_HOST, "a Docker host URL: unix://, tcp:// or ssh://"),
    )
    if cfg.notify_webhook and "notifyWebhook" not in secret_keys:  # the state would keep it in plain text
        r.problems.append(
            "notifyWebhook: expected a secret (webhook URLs carry tokens): pulumi config set --secret "
            "notifyWebhook URL; saw a plain value (its text is not shown)"
        )
    if dev_passphrase and passphrase.needs_private(environment, compliance):
        r.problems.append(passphrase.refusal(stack, environment, compliance))
    # The policy pack's prod-hipaa rule, here too so that a plain `pulumi up` (which runs no pack) keeps it.
    if environment == "prod" and compliance != "hipaa":
        r.problems.append(f"complianceMode: expected hipaa on a prod stack (prod runs HIPAA), saw {compliance!r}")
    if environment == "prod" and cfg.auto_rollback:
        r.problems.append("autoRollback: expected false on a prod stack (production rolls back by hand), saw 'true'")
    ports = {
        "apiHostPort": cfg.api_host_port,
        "redisHostPort": cfg.redis_host_port,
        "minioHostPort": cfg.minio_host_port,
        "proxyAdminPort": cfg.proxy_admin_port,
    }
    if len(set(ports.values())) < len(ports):
        r.problems.append(f"{', '.join(ports)}: expected four different ports, saw {ports}")
    if not cfg.allow_public_bind and not _loopback(cfg.bind_address):
        r.problems.append(
            f"bindAddress: expected a loopback address (127.0.0.1 or ::1), saw {cfg.bind_address!r}; "
            "publishing FetchML, Redis and MinIO beyond this host needs allowPublicBind: true, reviewed"
        )
    r.problems.extend(_target_problems(cfg))
    if image and image in cfg.denied_images:
        r.problems.append(
            f"image: {image} failed its health gate earlier and is listed in deniedImages; deploy it again only "
            f"with `fetchml-infra deploy --stack {stack} --image {image} --allow-denied`"
        )
    for key in sorted(set(values) - r.known):
        r.problems.append(f"{key}: not a setting of this program (known: {', '.join(sorted(r.known))})")
    if r.problems:
        raise ConfigError(stack, r.problems)
    return cfg


def _target_problems(cfg: StackConfig) -> list[str]:
    if cfg.target == "docker" and cfg.docker_host:
        # An explicit engine would give every resource a new provider: Pulumi would replace the whole stack.
        return [f"dockerHost: expected it only with target: swarm (a new stack moves engines), saw {cfg.docker_host!r}"]
    if cfg.target == "swarm" and not cfg.allow_public_bind:
        return [
            f"allowPublicBind: expected true with target: swarm, saw false; Swarm publishes a host-mode port on every "
            f"address of its node (bindAddress, {cfg.bind_address}, is only where the CLI reaches it): firewall the "
            "data node, then set allowPublicBind: true"
        ]
    return []


def _webhook(url: str) -> None:
    if url and not re.fullmatch(r"https?://[^\s/?#:]+(:[0-9]{1,5})?(/\S*)?", url):
        # Not echoed: a webhook URL carries a token. Only its scheme and length are shown.
        raise ValueError(f"expected an http(s)://host[:port]/path URL, saw {len(url)} characters starting {url[:5]!r}")


def _loopback(address: str) -> bool:
    try:
        return ipaddress.ip_address(address).is_loopback
    except ValueError:
        return True  # already reported as not an address


def split_project_keys(raw: Mapping[str, str], project: str = PROJECT) -> dict[str, str]:
    """Keep this project's keys (``fetchml:image`` -> ``image``); other namespaces are other programs'."""
    prefix = f"{project}:"
    return {k.removeprefix(prefix): v for k, v in raw.items() if k.startswith(prefix)}


def load() -> StackConfig:
    """Read and validate the running Pulumi program's stack config (the only Pulumi-aware part here)."""
    import pulumi
    from pulumi.runtime import config as runtime_config

    stack = pulumi.get_stack()
    values = split_project_keys(runtime_config.get_config_env())
    secrets = frozenset(split_project_keys({k: "" for k in runtime_config.get_config_secret_keys_env()}))
    dev = passphrase.uses_dev(passphrase.stack_file(Path.cwd(), stack), os.environ)
    return parse(stack, values, secrets, dev_passphrase=dev)
