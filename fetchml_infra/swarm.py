"""The FetchML component on a Docker Swarm (``target: swarm``): the same parts, as services.

- persistent: an attachable overlay network, Redis, MinIO and PostgreSQL as one-replica services pinned to
  the node labelled ``fetchml.role=data`` with their protected, retained volumes, the app's MinIO user, and
  the front proxy (Caddy) on the same node publishing the API's port in host mode. The volumes are created
  through the engine the stack talks to (``dockerHost``, a manager), so that manager is the data node: a
  named volume lives on one node, and a data service must never land on an empty one.
- the app: ``<prefix>-api`` and ``<prefix>-worker``, replicated services placed on ``fetchml.role=worker``
  nodes. Only ``image`` changes between releases, so a rollback is the same `pulumi up`: Swarm replaces the
  tasks one at a time, start-first (the tasks publish no port, so old and new can run side by side), and
  routes to a new task only once its image's HEALTHCHECK passes. ``failure_action=pause``: Swarm never
  changes a spec by itself, so Pulumi's state stays the truth and a failed release is left for the gate
  to judge and the operator (or autoRollback) to roll back.

The proxy finds the API's tasks through the swarm's DNS (``tasks.<prefix>-api``, refreshed every second),
so a release needs no switch: there is no Route here, the gate alone decides, and the audit entry follows it.
"""

from __future__ import annotations

import base64
import json
import math
from dataclasses import dataclass
from typing import Any, cast

import pulumi
import pulumi_docker as docker

from fetchml_infra import app_access, database, proxy, swarm_gate
from fetchml_infra import app_env as env
from fetchml_infra.app_access import APP_USER, AppAccess
from fetchml_infra.config import StackConfig
from fetchml_infra.gate import HealthGate

DATA = "node.labels.fetchml.role==data"
WORKER = "node.labels.fetchml.role==worker"
PROBE_IMAGE = "fetchml-infra/probe:1"  # resolves tasks.<service> inside the overlay network and asks each task
CONFIG_PATH = "/etc/caddy/swarm.json"
WORKER_HEALTH_PORT = 9102  # the worker image's own /health (the API's port is healthPort)


@dataclass(frozen=True)
class Parts:
    network: docker.Network
    volumes: list[docker.Volume]
    redis: docker.Service
    minio: docker.Service
    postgres: docker.Service
    proxy: docker.Service
    app_access: AppAccess
    api: docker.Service
    workers: docker.Service


def service_names(prefix: str) -> dict[str, str]:
    return {part: f"{prefix}-{part}" for part in ("redis", "minio", "postgres", "proxy", "api", "worker")}


def proxy_config(api_service: str, port: int) -> dict[str, Any]:
    """Caddy on a swarm: every request goes to one of the API's tasks, as the swarm's DNS lists them now. A
    task that stops leaves DNS two seconds before its SIGTERM, and a dial that still fails is retried."""
    handler = {
        "handler": "reverse_proxy",
        "dynamic_upstreams": {"source": "a", "name": f"tasks.{api_service}", "port": str(port), "refresh": "1s"},
        "load_balancing": {
            "selection_policy": {"policy": "round_robin"},
            "try_duration": "5s",
            "try_interval": "250ms",
        },
        "health_checks": {"passive": {"fail_duration": "5s", "max_fails": 1}},
    }
    server = {
        "listen": [f":{proxy.LISTEN_PORT}"],
        "automatic_https": {"disable": True},
        "routes": [{"handle": [handler]}],
    }
    return {
        "admin": {"disabled": True},
        "apps": {"http": {"grace_period": proxy.GRACE, "servers": {proxy.SERVER: server}}},
    }


def guarded(cfg: StackConfig) -> list[swarm_gate.Guarded]:
    names = service_names(cfg.name_prefix)
    return [
        swarm_gate.Guarded(names["api"], cfg.api_replicas, cfg.health_port, cfg.health_path),
        swarm_gate.Guarded(names["worker"], cfg.worker_replicas, WORKER_HEALTH_PORT, cfg.health_path),
    ]


class Declarer:
    """Declares secrets and services under ``parent``, with the settings every service shares."""

    def __init__(self, parent: pulumi.Resource, cfg: StackConfig) -> None:
        self.parent, self.cfg, self.names = parent, cfg, service_names(cfg.name_prefix)
        self.child = pulumi.ResourceOptions(parent=parent)

    def secret(self, name: str, value: str) -> docker.Secret:
        """A swarm secret: the task reads it as a file; Swarm keeps it encrypted in its raft log."""
        data = pulumi.Output.secret(value).apply(lambda v: base64.b64encode(v.encode()).decode())
        return docker.Secret(name, data=data, opts=self.child)

    def service(
        self,
        part: str,
        image: str,
        *,
        replicas: int,
        placement: str,
        network: docker.Network,
        env: dict[str, str] | None = None,
        secrets: list[tuple[docker.Secret, str]] | None = None,
        mounts: list[docker.ServiceTaskSpecContainerSpecMountArgs] | None = None,
        port: tuple[int, int] | None = None,
        alias: str | None = None,
        start_first: bool = False,
        grace: str = "10s",
        extra: dict[str, Any] | None = None,
        opts: pulumi.ResourceOptions | None = None,
    ) -> docker.Service:
        order = "start-first" if start_first else "stop-first"  # a data service's volume takes one writer
        batch = max(1, math.ceil(replicas / 4))  # 16 workers move four at a time
        spec = docker.ServiceTaskSpecContainerSpecArgs(
            image=image,
            env=env or {},
            secrets=[
                docker.ServiceTaskSpecContainerSpecSecretArgs(secret_id=s.id, secret_name=s.name, file_name=path)
                for s, path in secrets or []
            ],
            mounts=mounts or [],
            stop_grace_period=grace,
            **(extra or {}),
        )
        return docker.Service(
            part,
            name=self.names[part],
            task_spec=docker.ServiceTaskSpecArgs(
                container_spec=spec,
                placement=docker.ServiceTaskSpecPlacementArgs(constraints=[placement], prefs=["spread=node.id"]),
                # By id: the provider reads a service's network back as `id`, and the SDK's `name` (deprecated
                # upstream, and ForceNew) would then differ on every refresh and replace the service.
                networks_advanceds=[cast(Any, {"id": network.id, "aliases": [alias] if alias else []})],
                restart_policy=docker.ServiceTaskSpecRestartPolicyArgs(condition="any", delay="2s", window="0s"),
            ),
            mode=docker.ServiceModeArgs(replicated=docker.ServiceModeReplicatedArgs(replicas=replicas)),
            endpoint_spec=docker.ServiceEndpointSpecArgs(
                mode="dnsrr",  # no IPVS needed: a name resolves to the tasks themselves
                ports=[
                    docker.ServiceEndpointSpecPortArgs(target_port=port[0], published_port=port[1], publish_mode="host")
                ]
                if port
                else [],
            ),
            update_config=docker.ServiceUpdateConfigArgs(
                parallelism=batch, order=order, failure_action="pause", monitor="5s"
            ),
            # Used only by a hand-run `docker service rollback`: Pulumi never asks the swarm to roll back.
            rollback_config=docker.ServiceRollbackConfigArgs(
                parallelism=batch, order=order, failure_action="continue", monitor="5s"
            ),
            opts=pulumi.ResourceOptions.merge(self.child, opts),
        )


def volume_mount(volume: docker.Volume, path: str) -> docker.ServiceTaskSpecContainerSpecMountArgs:
    return docker.ServiceTaskSpecContainerSpecMountArgs(type="volume", source=volume.name, target=path)


def declare(parent: pulumi.Resource, cfg: StackConfig, app_env: dict[str, str], worker_env: dict[str, str]) -> Parts:
    """Every resource of a swarm stack. ``app_env`` and ``worker_env`` are the only inputs that carry ``image``."""
    d, p = Declarer(parent, cfg), cfg.name_prefix
    kept = pulumi.ResourceOptions(parent=parent, protect=True, retain_on_delete=True)
    network = docker.Network("network", name=f"{p}-net", driver="overlay", attachable=True, opts=d.child)
    volumes = [
        docker.Volume(f"{part}-data", name=f"{p}-{part}-data", opts=kept) for part in ("redis", "minio", "postgres")
    ]
    redis_data, minio_data, postgres_data = volumes
    root_user = d.secret("minio-root-user", cfg.minio_root_user.value)
    root_password = d.secret("minio-root-password", cfg.minio_root_password.value)
    app_key = d.secret("minio-app-credentials", f"{APP_USER}\n{cfg.minio_app_secret_key.value}\n")
    db_password = d.secret("postgres-password", f"{cfg.postgres_password.value}\n")
    redis = d.service(
        "redis", cfg.redis_image, replicas=1, placement=DATA, network=network, alias="redis",
        mounts=[volume_mount(redis_data, "/data")], port=(env.REDIS_PORT, cfg.redis_host_port),
    )  # fmt: skip
    minio = d.service(
        "minio", cfg.minio_image, replicas=1, placement=DATA, network=network, alias="minio",
        env={"MINIO_ROOT_USER_FILE": env.ROOT_USER_FILE, "MINIO_ROOT_PASSWORD_FILE": env.ROOT_PASSWORD_FILE},
        secrets=[(root_user, env.ROOT_USER_FILE), (root_password, env.ROOT_PASSWORD_FILE)],
        mounts=[volume_mount(minio_data, "/data")], port=(env.MINIO_PORT, cfg.minio_host_port),
    )  # fmt: skip
    postgres = d.service(
        "postgres", cfg.postgres_image, replicas=1, placement=DATA, network=network, alias="postgres",
        env={"POSTGRES_PASSWORD_FILE": database.PASSWORD_FILE}, secrets=[(db_password, database.PASSWORD_FILE)],
        mounts=[volume_mount(postgres_data, database.DATA_PATH)], grace="30s", extra={"stop_signal": "SIGINT"},
    )  # fmt: skip
    access = app_access.for_stack(cfg, minio.id, d.child)
    caddy = docker.ServiceConfig(
        "proxy-config",
        data=base64.b64encode(json.dumps(proxy_config(d.names["api"], cfg.health_port)).encode()).decode(),
        opts=pulumi.ResourceOptions(parent=parent),
    )
    front = d.service(
        "proxy", cfg.proxy_image, replicas=1, placement=DATA, network=network,
        port=(proxy.LISTEN_PORT, cfg.api_host_port),
        extra={
            "commands": ["/usr/bin/caddy", "run", "--config", CONFIG_PATH],
            "configs": [docker.ServiceTaskSpecContainerSpecConfigArgs(
                config_id=caddy.id, config_name=caddy.name, file_name=CONFIG_PATH)],
        },
    )  # fmt: skip
    after_data = pulumi.ResourceOptions(depends_on=[redis, minio, postgres, access])
    app_secrets = [(app_key, env.APP_CREDENTIALS_FILE), (db_password, database.APP_PASSWORD_FILE)]
    api = d.service(
        "api", cfg.api_image, replicas=cfg.api_replicas, placement=WORKER, network=network, env=app_env,
        secrets=app_secrets, start_first=True, opts=after_data,
    )  # fmt: skip
    grace = cfg.worker_stop_grace_seconds
    workers = d.service(
        "worker", cfg.worker_image, replicas=cfg.worker_replicas, placement=WORKER, network=network,
        env=worker_env, secrets=app_secrets, start_first=True, grace=f"{grace + 2}s", opts=after_data,
    )  # fmt: skip
    return Parts(network, volumes, redis, minio, postgres, front, access, api, workers)


def gate(
    parent: pulumi.Resource, cfg: StackConfig, parts: Parts, audit_log: str, actor: str, advice: str
) -> HealthGate:
    """The HealthGate, asking every task through the probe instead of one container's URL."""
    checks = guarded(cfg)
    return HealthGate(
        "health-gate",
        url=f"tasks.{parts_name(cfg, 'api')}:{cfg.health_port}{cfg.health_path}",
        image=cfg.image,
        compliance_mode=cfg.compliance_mode,
        timeout=cfg.health_timeout_seconds,
        stack=cfg.stack,
        audit_log=audit_log,
        audit_sink=(cfg.audit_sink, cfg.audit_retention_days),
        actor=actor,
        rollback_advice=advice,
        targets=pulumi.Output.all(parts.api.id, parts.workers.id),
        swarm={
            "docker_host": cfg.docker_host,
            "network": parts.network.name,
            "probe_image": PROBE_IMAGE,
            "services": [[g.service, g.replicas, g.port, g.path] for g in checks],
            "images": {checks[0].service: cfg.api_image, checks[1].service: cfg.worker_image},
        },
        opts=pulumi.ResourceOptions(parent=parent, depends_on=[parts.api, parts.workers]),
    )


def parts_name(cfg: StackConfig, part: str) -> str:
    return service_names(cfg.name_prefix)[part]


def export(parts: Parts) -> None:
    pulumi.export("volumes", [v.name for v in parts.volumes])
    pulumi.export("database", parts.postgres.name)
    pulumi.export("services", [parts.api.name, parts.workers.name])
    pulumi.export("proxy", parts.proxy.name)
    pulumi.export("network", parts.network.name)
