"""The app's environment (with the image reference, the only inputs that carry ``image``) and where the
stack's secrets reach the containers as files: the same on both targets."""

from __future__ import annotations

from fetchml_infra import database
from fetchml_infra.app_access import ARTIFACTS_BUCKET
from fetchml_infra.config import StackConfig

REDIS_PORT = 6379
MINIO_PORT = 9000
APP_CREDENTIALS_FILE = "/run/secrets/fetchml-minio"
ROOT_USER_FILE = "/run/secrets/minio-root-user"  # MinIO's own, for MinIO only
ROOT_PASSWORD_FILE = "/run/secrets/minio-root-password"


def app_env(cfg: StackConfig) -> dict[str, str]:
    """The app's environment: the one place besides the image reference that carries ``image``."""
    return {
        "FETCHML_VERSION": cfg.image,
        "FETCHML_COMPLIANCE_MODE": cfg.compliance_mode,
        "FETCHML_ENVIRONMENT": cfg.environment,
        "FETCHML_REDIS_ADDR": f"redis:{REDIS_PORT}",
        "FETCHML_MINIO_ENDPOINT": f"minio:{MINIO_PORT}",
        "FETCHML_MINIO_CREDENTIALS": APP_CREDENTIALS_FILE,
        "FETCHML_ARTIFACTS_BUCKET": ARTIFACTS_BUCKET,
        **dict(e.split("=", 1) for e in database.app_envs()),
    }


def worker_env(cfg: StackConfig) -> dict[str, str]:
    grace = cfg.worker_stop_grace_seconds
    return {**app_env(cfg), "FETCHML_JOB_SECONDS": f"{cfg.job_seconds:g}", "FETCHML_STOP_GRACE_SECONDS": str(grace)}
