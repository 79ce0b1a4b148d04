"""The FetchML component: what runs where on the Docker host.

Two kinds of things live here and they never mix:

- persistent: the network, the Redis, MinIO and PostgreSQL volumes and containers, the app's own MinIO user
  (app_access), and the front proxy that owns the API's host port. None of them takes any input from
  ``image``; the volumes are protected and retained, so neither a rollback nor a destroy can remove them.
- the app: one API container and its workers per image (``<prefix>-api-<image>``,
  ``<prefix>-worker-<image>-<n>``). ``_app`` is the one place that reads ``cfg.image``; from there it flows
  only into those containers, the HealthGate, the Route and the AuditEntry.

A rollback is therefore `pulumi config set image sha-<previous> && pulumi up`, blue/green: the new API starts
beside the old one, the gate checks it directly, the Route switches the proxy to it and drains the old one,
the new workers start, and only then does Pulumi delete the old containers (their names are no longer in the
program). A release that fails its gate is never routed and never gets workers.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pulumi
import pulumi_docker as docker

from fetchml_infra import app_access, audit, database, guard, host, proxy, swarm
from fetchml_infra.app_access import APP_USER, AppAccess
from fetchml_infra.app_env import (
    APP_CREDENTIALS_FILE,
    MINIO_PORT,
    REDIS_PORT,
    ROOT_PASSWORD_FILE,
    ROOT_USER_FILE,
    app_env,
    worker_env,
)
from fetchml_infra.audit.shipping import catch_up
from fetchml_infra.config import StackConfig
from fetchml_infra.gate import AuditEntry, HealthGate, current_actor
from fetchml_infra.recording import shipping_of, sink_ready

RESTART = "unless-stopped"
DRAIN_SECONDS = 30.0  # the longest an old API's requests in flight may keep it after the switch


@dataclass(frozen=True)
class Persistent:
    network: docker.Network
    redis_data: docker.Volume
    minio_data: docker.Volume
    redis: docker.Container
    minio: docker.Container
    postgres_data: docker.Volume
    postgres: docker.Container
    app_access: AppAccess  # the app's own MinIO user, bucket and policy (no root key in the app)
    proxy: docker.Container  # owns the API's host port; a deploy only reconfigures it


@dataclass(frozen=True)
class App:
    api: docker.Container
    route: proxy.Route
    workers: list[docker.Container]


def rollback_advice(cfg: StackConfig) -> str:
    """What a failed gate tells the operator to do. On an autoRollback stack the CLI is about to roll back by
    itself, so the command is for the plain `pulumi up` path only."""
    command = f"fetchml-infra rollback --stack {cfg.stack} --reason health-check-failure"
    if cfg.auto_rollback:
        return f"fetchml-infra deploy rolls back by itself (autoRollback); after a plain `pulumi up`, run: {command}"
    return f"roll back with: {command}"


class FetchML(pulumi.ComponentResource):
    def __init__(self, name: str, cfg: StackConfig, opts: pulumi.ResourceOptions | None = None) -> None:
        host.use_engine(cfg)
        if cfg.docker_host:  # a swarm's manager: every docker resource below is declared through it
            engine = docker.Provider("engine", host=cfg.docker_host)
            opts = pulumi.ResourceOptions.merge(opts, pulumi.ResourceOptions(providers={"docker": engine}))
        super().__init__("fetchml:index:FetchML", name, None, opts)
        self.cfg = cfg
        # Pulumi runs the program in the project directory; the providers get the absolute path.
        self.audit_log = cfg.audit_log_path(Path.cwd())
        self.route_file = proxy.route_file(cfg, Path.cwd())
        if not pulumi.runtime.is_dry_run():  # an update must be able to record itself before it moves anything
            audit.require_appendable(self.audit_log)
            sink_ready(cfg, self.audit_log, pulumi.log.warn)
            self.route_file.parent.mkdir(parents=True, exist_ok=True)  # Docker would make it root's own
        else:  # with a sink, the team's lines first (a torn line the sink holds whole is completed)
            catch_up(self.audit_log, shipping_of(cfg))
        audit.require_intact(self.audit_log)  # fail before any resource, on preview as well as up
        # The schema check and the pre-move snapshot, before any container is replaced (fetchml_infra.guard).
        override = guard.before_move(cfg, self.audit_log, pulumi.runtime.is_dry_run(), _tell)
        self.actor = current_actor()
        if cfg.target == "swarm":
            api_env = {**app_env(cfg), "FETCHML_HEALTH_PORT": str(cfg.health_port)}
            self.swarm = swarm.declare(self, cfg, api_env, worker_env(cfg))
            self.gate = swarm.gate(self, cfg, self.swarm, self.audit_log, self.actor, rollback_advice(cfg))
            moved: list[pulumi.Resource] = [self.gate]
        else:
            self.persistent = self._persistent(cfg)
            self.app = self._app(cfg, self.persistent)
            moved = [self.app.route, *self.app.workers]
        self.audit = AuditEntry(
            "audit-entry",
            image=cfg.image,
            stack=cfg.stack,
            audit_log=self.audit_log,
            audit_sink=(cfg.audit_sink, cfg.audit_retention_days),
            notify_webhook=cfg.notify_webhook,
            actor=self.actor,
            reason=guard.with_note(cfg.deploy_reason, override),
            gate=self.gate.healthy,
            # The record outlives the stack: never deleted, and removing it from the program is refused.
            # Written once the release is routed and its workers run: that is the move it records.
            opts=pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True, depends_on=moved),
        )
        self.register_outputs({})

    def _persistent(self, cfg: StackConfig) -> Persistent:
        p = cfg.name_prefix
        child = pulumi.ResourceOptions(parent=self)
        kept = pulumi.ResourceOptions(parent=self, protect=True, retain_on_delete=True)
        network = docker.Network("network", name=f"{p}-net", opts=child)
        redis_data = docker.Volume("redis-data", name=f"{p}-redis-data", opts=kept)
        minio_data = docker.Volume("minio-data", name=f"{p}-minio-data", opts=kept)
        redis_image = docker.RemoteImage("redis-image", name=cfg.redis_image, keep_locally=True, opts=child)
        minio_image = docker.RemoteImage("minio-image", name=cfg.minio_image, keep_locally=True, opts=child)
        redis = docker.Container(
            "redis",
            name=f"{p}-redis",
            image=redis_image.image_id,
            restart=RESTART,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=["redis"])],
            volumes=[docker.ContainerVolumeArgs(volume_name=redis_data.name, container_path="/data")],
            ports=[_port(cfg, REDIS_PORT, cfg.redis_host_port)],
            remove_volumes=False,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        minio = docker.Container(
            "minio",
            name=f"{p}-minio",
            image=minio_image.image_id,
            restart=RESTART,
            # Files, not environment variables: `docker inspect` shows a container's environment to anyone
            # who may talk to Docker. MinIO reads *_FILE itself.
            envs=[f"MINIO_ROOT_USER_FILE={ROOT_USER_FILE}", f"MINIO_ROOT_PASSWORD_FILE={ROOT_PASSWORD_FILE}"],
            uploads=[
                database.secret_file(ROOT_USER_FILE, cfg.minio_root_user.value),
                database.secret_file(ROOT_PASSWORD_FILE, cfg.minio_root_password.value),
            ],
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=["minio"])],
            volumes=[docker.ContainerVolumeArgs(volume_name=minio_data.name, container_path="/data")],
            ports=[_port(cfg, MINIO_PORT, cfg.minio_host_port)],
            remove_volumes=False,
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        access = app_access.for_stack(cfg, minio.id, child)
        postgres_data, postgres = database.postgres(cfg, network, RESTART, self)
        proxy_image = docker.RemoteImage("proxy-image", name=cfg.proxy_image, keep_locally=True, opts=child)
        front = docker.Container(
            "proxy",
            name=f"{p}-proxy",
            image=proxy_image.image_id,
            restart=RESTART,
            networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name)],
            # Caddy keeps the last config it loaded in /config, so a restarted proxy routes where it did; a
            # replaced one starts with a 503, and the Route (its input is this container's id) routes it again.
            # The route file it reads for every request is the stack's, on the host (proxy.route_file).
            volumes=[
                docker.ContainerVolumeArgs(
                    host_path=str(self.route_file.parent), container_path=proxy.ROUTE_DIR, read_only=True
                )
            ],
            ports=[
                _port(cfg, proxy.LISTEN_PORT, cfg.api_host_port),
                docker.ContainerPortArgs(
                    internal=proxy.ADMIN_PORT, external=cfg.proxy_admin_port, ip=cfg.proxy_admin_host
                ),
            ],
            opts=pulumi.ResourceOptions(parent=self, delete_before_replace=True),
        )
        return Persistent(network, redis_data, minio_data, redis, minio, postgres_data, postgres, access, front)

    def _app(self, cfg: StackConfig, persistent: Persistent) -> App:
        """The only reader of ``cfg.image``."""
        p, tag = cfg.name_prefix, cfg.image
        # Kept locally on destroy and replace, so every earlier image stays available as a rollback target.
        api_image = docker.RemoteImage(
            "api-image", name=cfg.api_image, keep_locally=True, opts=pulumi.ResourceOptions(parent=self)
        )
        worker_image = docker.RemoteImage(
            "worker-image", name=cfg.worker_image, keep_locally=True, opts=pulumi.ResourceOptions(parent=self)
        )
        envs = [f"{k}={v}" for k, v in app_env(cfg).items()]
        # The app's key, never the root one; same value on every image, so a rollback changes no credential.
        credentials = [
            database.secret_file(APP_CREDENTIALS_FILE, f"{APP_USER}\n{cfg.minio_app_secret_key.value}\n"),
            database.app_upload(cfg),
        ]
        network = [docker.ContainerNetworksAdvancedArgs(name=persistent.network.name)]
        # One name per image: the new containers start beside the old ones, which Pulumi deletes last.
        after_data = pulumi.ResourceOptions(
            parent=self, depends_on=[persistent.redis, persistent.minio, persistent.postgres, persistent.app_access]
        )
        api = docker.Container(
            f"api-{tag}",
            name=host.api_name(p, tag),
            image=api_image.image_id,
            envs=[*envs, f"FETCHML_HEALTH_PORT={cfg.health_port}"],
            uploads=credentials,
            restart=RESTART,
            networks_advanced=network,
            opts=after_data,
        )
        # Directly, not through the proxy: the proxy keeps serving the old release until this passes.
        direct = api.network_datas.apply(lambda nets: _direct_url(cfg, nets))
        self.gate = HealthGate(
            "health-gate",
            url=direct,
            image=cfg.image,
            compliance_mode=cfg.compliance_mode,
            timeout=cfg.health_timeout_seconds,
            stack=cfg.stack,
            audit_log=self.audit_log,
            audit_sink=(cfg.audit_sink, cfg.audit_retention_days),
            actor=self.actor,
            rollback_advice=rollback_advice(cfg),
            targets=pulumi.Output.all(api.id),
            container=host.api_name(p, tag),
            opts=pulumi.ResourceOptions(parent=self),
        )
        route = proxy.Route(
            "proxy-route",
            stack=cfg.stack,
            admin=cfg.proxy_admin_url,
            route=str(self.route_file),
            upstream=proxy.upstream(p, tag, cfg.health_port),
            health_path=cfg.health_path,
            proxy=persistent.proxy.id,
            gate=self.gate.healthy,
            drain_seconds=DRAIN_SECONDS,
            opts=pulumi.ResourceOptions(parent=self),
        )
        # On replace or destroy a worker gets SIGTERM and this long to finish or put back its job (it gives
        # itself a second less), not an immediate SIGKILL. New workers start once their release is routed.
        grace = cfg.worker_stop_grace_seconds
        worker_envs = [f"{k}={v}" for k, v in worker_env(cfg).items()]
        workers = [
            docker.Container(
                f"worker-{tag}-{i}",
                name=host.worker_name(p, tag, i),
                image=worker_image.image_id,
                envs=worker_envs,
                uploads=credentials,
                stop_timeout=grace + 2,
                destroy_grace_seconds=grace + 2,
                restart=RESTART,
                networks_advanced=network,
                opts=pulumi.ResourceOptions.merge(after_data, pulumi.ResourceOptions(depends_on=[route])),
            )
            for i in range(1, cfg.worker_replicas + 1)
        ]
        return App(api, route, workers)

    def export_outputs(self) -> None:
        cfg = self.cfg
        pulumi.export("image", cfg.image)
        pulumi.export("environment", cfg.environment)
        pulumi.export("compliance_mode", cfg.compliance_mode)
        pulumi.export("api_url", f"http://{cfg.published_host}:{cfg.api_host_port}")
        pulumi.export("health_url", cfg.health_url)
        pulumi.export("redis_address", f"{cfg.published_host}:{cfg.redis_host_port}")
        pulumi.export("minio_endpoint", f"{cfg.published_host}:{cfg.minio_host_port}")
        pulumi.export("target", cfg.target)
        if cfg.target == "swarm":
            swarm.export(self.swarm)
        else:
            kept = self.persistent
            pulumi.export("volumes", [kept.redis_data.name, kept.minio_data.name, kept.postgres_data.name])
            pulumi.export("database", kept.postgres.name)
            pulumi.export("containers", [self.app.api.name, *[w.name for w in self.app.workers]])
            pulumi.export("proxy", self.persistent.proxy.name)
            pulumi.export("routed", self.app.route.upstream)
        pulumi.export("reported_compliance_mode", self.gate.reported_compliance_mode)
        pulumi.export("audit_log", self.audit_log)
        pulumi.export("audit_head", self.audit.head)
        pulumi.export("audit_length", self.audit.length)
        pulumi.export("audit_action", self.audit.action)
        pulumi.export("audit_sink", cfg.audit_sink)
        pulumi.export("audit_shipping", self.audit.shipping)


def _tell(line: str) -> None:
    (pulumi.log.warn if line.startswith("warning") else pulumi.log.info)(line.removeprefix("warning: "))


def _direct_url(cfg: StackConfig, nets: Sequence[Any] | None) -> str:
    """The health URL of a container at its address on the stack network (empty before it has one)."""
    address = nets[0].ip_address if nets else None
    return f"http://{address}:{cfg.health_port}{cfg.health_path}" if address else ""


def _port(cfg: StackConfig, internal: int, external: int) -> docker.ContainerPortArgs:
    return docker.ContainerPortArgs(internal=internal, external=external, ip=cfg.bind_address)
