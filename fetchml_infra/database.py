"""The stack's PostgreSQL: a persistent part like Redis and MinIO, never an input of ``image``.

Its volume is protected and retained; its password is a Pulumi secret written into the container as a file
(PostgreSQL reads it once, when it initialises an empty data directory, so it is set once and not rotated).
The API applies its own migrations on start (fetchml_infra.schema); nothing here ever reverts one.
"""

from __future__ import annotations

import pulumi
import pulumi_docker as docker

from fetchml_infra import schema
from fetchml_infra.config import StackConfig

PORT = 5432
DATA_PATH = "/var/lib/postgresql/data"
PASSWORD_FILE = "/run/secrets/postgres-password"
APP_PASSWORD_FILE = "/run/secrets/fetchml-postgres"  # the same password, where the app reads it


def secret_file(path: str, value: str) -> docker.ContainerUploadArgs:
    """A file written into the container at create time: in Pulumi's state as a secret, not in its config."""
    return docker.ContainerUploadArgs(file=path, content=pulumi.Output.secret(value))


def app_envs() -> list[str]:
    return [f"FETCHML_DATABASE_ADDR=postgres:{PORT}", f"FETCHML_DATABASE_PASSWORD_FILE={APP_PASSWORD_FILE}"]


def app_upload(cfg: StackConfig) -> docker.ContainerUploadArgs:
    return secret_file(APP_PASSWORD_FILE, f"{cfg.postgres_password.value}\n")


def postgres(
    cfg: StackConfig, network: docker.Network, restart: str, parent: pulumi.Resource
) -> tuple[docker.Volume, docker.Container]:
    """The data volume (protected, kept on destroy) and the database container on the stack network."""
    p = cfg.name_prefix
    kept = pulumi.ResourceOptions(parent=parent, protect=True, retain_on_delete=True)
    data = docker.Volume("postgres-data", name=f"{p}-postgres-data", opts=kept)
    image = docker.RemoteImage(
        "postgres-image", name=cfg.postgres_image, keep_locally=True, opts=pulumi.ResourceOptions(parent=parent)
    )
    server = docker.Container(
        "postgres",
        name=schema.container(p),
        image=image.image_id,
        restart=restart,
        envs=[f"POSTGRES_PASSWORD_FILE={PASSWORD_FILE}"],
        uploads=[secret_file(PASSWORD_FILE, cfg.postgres_password.value)],
        networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name, aliases=["postgres"])],
        volumes=[docker.ContainerVolumeArgs(volume_name=data.name, container_path=DATA_PATH)],
        # No host port: the CLI reaches it with `docker exec` (schema, snapshots, restore), the app by network.
        stop_signal="SIGINT",  # PostgreSQL's fast shutdown: a clean checkpoint, no recovery on the next start
        stop_timeout=30,
        remove_volumes=False,
        opts=pulumi.ResourceOptions(parent=parent, delete_before_replace=True),
    )
    return data, server
