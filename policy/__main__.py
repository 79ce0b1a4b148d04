"""fetchml-safety: the Pulumi policy pack that refuses unsafe FetchML changes before anything is touched.

Run it with the program: ``pulumi preview --policy-pack policy`` (or ``up``). Every policy is mandatory, so a
violation fails a preview and stops an update before the offending resource is created or changed. Each message
says what was seen, what is expected and how to fix it.

- persistent-volumes-protected: every docker Volume is registered with ``protect=True``.
- app-images-pinned: API/worker images are tagged ``sha-<7..40 hex>``; any other image (the data stores) is
  pinned to a tag other than ``latest`` or to a digest.
- prod-hipaa: a container with ``FETCHML_ENVIRONMENT=prod`` has ``FETCHML_COMPLIANCE_MODE=hipaa``.
- loopback-ports: every published port binds a loopback address, unless ``allowPublicBind`` is configured.

Config (``--policy-pack-config FILE``, JSON): ``{"loopback-ports": {"allowPublicBind": true}}`` and
``{"app-images-pinned": {"appRepositories": ["ghcr.io/acme/fetchml-api", ...]}}``.

The pack imports nothing from the project: it only needs ``pulumi`` and ``pulumi-policy`` in the virtualenv
named in PulumiPolicy.yaml.
"""

from __future__ import annotations

import ipaddress
import re
from collections.abc import Mapping, Sequence
from typing import Any

from pulumi_policy import (
    EnforcementLevel,
    Policy,
    PolicyConfigSchema,
    PolicyPack,
    ReportViolation,
    ResourceValidationArgs,
    ResourceValidationPolicy,
)
from pulumi_policy.proxy import UnknownValueError

PACK = "fetchml-safety"
VOLUME = "docker:index/volume:Volume"
REMOTE_IMAGE = "docker:index/remoteImage:RemoteImage"
CONTAINER = "docker:index/container:Container"

APP_TAG = re.compile(r"^sha-[0-9a-f]{7,40}$")
DIGEST = re.compile(r"^sha256:[0-9a-f]{64}$")
DEFAULT_APP_REPOSITORIES = ["fetchml-api", "fetchml-worker"]


def _message(subject: str, seen: str, expected: str, fix: str) -> str:
    return f"{subject}\n  seen: {seen}\n  expected: {expected}\n  fix: {fix}"


def _subject(args: ResourceValidationArgs, what: str) -> str:
    return f"{what} '{args.name}' on stack '{_stack(args)}'"


def _stack(args: ResourceValidationArgs) -> str:
    """The stack name from the URN (urn:pulumi:<stack>::<project>::<type>::<name>)."""
    parts = args.urn.split(":", 2)
    return parts[2].split("::", 1)[0] if len(parts) == 3 else "<stack>"


# --- persistent-volumes-protected ------------------------------------------------------------------------------


def volume_problem(name: str, docker_name: str, protected: bool) -> tuple[str, str, str] | None:
    """(seen, expected, fix) when an unprotected volume would be registered, else None."""
    if protected:
        return None
    return (
        f"docker volume {docker_name!r} is registered without protect (protect=False)",
        "every persistent volume protected (protect=True, and retain_on_delete=True) so that no update, "
        "rollback or destroy can delete the Redis queue or the MinIO artifacts",
        f"register '{name}' with opts=pulumi.ResourceOptions(protect=True, retain_on_delete=True) and run again",
    )


def _validate_volume(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != VOLUME:
        return
    try:
        docker_name = str(args.props.get("name") or args.name)
    except UnknownValueError:  # a computed name during preview: protect is what matters, and it is known
        docker_name = args.name
    problem = volume_problem(args.name, docker_name, bool(args.opts.protect))
    if problem:
        report(_message(_subject(args, "volume"), *problem), None)


# --- app-images-pinned -----------------------------------------------------------------------------------------


def split_image(ref: str) -> tuple[str, str | None, str | None]:
    """(repository, tag or None, digest or None) of an image reference such as ``host:5000/a/b:tag@sha256:...``."""
    name, _, digest = ref.partition("@")
    slash, colon = name.rfind("/"), name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1 :], digest or None
    return name, None, digest or None


def is_app_repository(repository: str, app_repositories: Sequence[str]) -> bool:
    """An entry names a repository in full (``ghcr.io/org/fetchml-api``) or by its last path segments."""
    return any(repository == r or repository.endswith("/" + r) for r in app_repositories)


def image_problem(ref: str, app_repositories: Sequence[str], stack: str = "<stack>") -> tuple[str, str, str] | None:
    """(seen, expected, fix) when ``ref`` is not pinned the way its kind of image must be, else None."""
    repository, tag, digest = split_image(ref)
    if tag is None:
        state = "has no tag, so Docker resolves it to the moving tag 'latest'"
    elif tag == "latest":
        state = "uses the moving tag 'latest'"
    else:
        state = f"uses tag {tag!r}"
    if is_app_repository(repository, app_repositories):
        if tag is not None and APP_TAG.match(tag):
            return None
        return (
            f"app image {ref!r} {state}",
            f"an app image tagged sha-<7 to 40 lowercase hex digits of the commit>, e.g. {repository}:sha-1a2b3c4, "
            "so that a rollback names exactly the image that ran before",
            f"deploy a commit's image: `fetchml-infra deploy --stack {stack} --image sha-<commit>` "
            f"(or `pulumi config set image sha-<commit> --stack {stack}`)",
        )
    if (tag is not None and tag != "latest") or (digest is not None and DIGEST.match(digest)):
        return None
    return (
        f"data-store image {ref!r} {state}",
        f"an image pinned to a tag other than 'latest' or to a digest, e.g. {repository}:7.0 or "
        f"{repository}@sha256:<64 hex>, so that the image under a persistent volume never moves by itself",
        f"pin it with the key that sets it: `pulumi config set redisImage|minioImage {repository}:<version> "
        f"--stack {stack}` and run again",
    )


def _app_repositories(args: ResourceValidationArgs) -> list[str]:
    configured: Any = args.get_config().get("appRepositories")
    if isinstance(configured, Sequence) and not isinstance(configured, str) and configured:
        return [str(r) for r in configured]
    return list(DEFAULT_APP_REPOSITORIES)


def _validate_image(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type == REMOTE_IMAGE:
        ref = args.props.get("name")
        what = "remote image"
    elif args.resource_type == CONTAINER:
        # Containers normally run an image ID (sha256:...) from a RemoteImage, which is checked above; a container
        # that names an image directly is checked the same way. During preview the ID is not known yet.
        try:
            ref = args.props.get("image")
        except UnknownValueError:
            return
        what = "container"
        if not isinstance(ref, str) or DIGEST.match(ref) or ref.startswith("sha256:"):
            return
    else:
        return
    if not isinstance(ref, str) or not ref:
        return
    problem = image_problem(ref, _app_repositories(args), _stack(args))
    if problem:
        report(_message(_subject(args, what), *problem), None)


# --- prod-hipaa ------------------------------------------------------------------------------------------------


def hipaa_problem(envs: Sequence[str], stack: str = "<stack>") -> tuple[str, str, str] | None:
    """(seen, expected, fix) when a prod container does not run in HIPAA compliance mode, else None."""
    env: dict[str, str] = {}
    for item in envs:
        key, sep, value = str(item).partition("=")
        if sep:
            env[key] = value
    if env.get("FETCHML_ENVIRONMENT") != "prod" or env.get("FETCHML_COMPLIANCE_MODE") == "hipaa":
        return None
    mode = env.get("FETCHML_COMPLIANCE_MODE")
    seen_mode = f"FETCHML_COMPLIANCE_MODE={mode}" if mode is not None else "no FETCHML_COMPLIANCE_MODE"
    return (
        f"FETCHML_ENVIRONMENT=prod with {seen_mode}",
        "every prod container runs with FETCHML_COMPLIANCE_MODE=hipaa",
        f"`pulumi config set complianceMode hipaa --stack {stack}` (the program sets "
        "FETCHML_COMPLIANCE_MODE from it) and run again",
    )


def _validate_hipaa(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER:
        return
    envs = args.props.get("envs") or []
    problem = hipaa_problem(list(envs), _stack(args))
    if problem:
        report(_message(_subject(args, "container"), *problem), None)


# --- loopback-ports --------------------------------------------------------------------------------------------


def is_loopback(ip: str) -> bool:
    try:
        return ipaddress.ip_address(ip.strip("[]")).is_loopback
    except ValueError:
        return False


def _number(value: Any) -> str:
    return str(int(value)) if isinstance(value, float) and value.is_integer() else str(value)


def port_problem(port: Mapping[str, Any], stack: str = "<stack>") -> tuple[str, str, str] | None:
    """(seen, expected, fix) when a published port is reachable from other hosts, else None."""
    ip = port.get("ip")
    if ip and is_loopback(str(ip)):
        return None
    where = f"ip {ip!r}" if ip else "no ip (Docker publishes it on every interface)"
    return (
        f"container port {_number(port.get('internal'))} published on host port {_number(port.get('external'))} "
        f"with {where}",
        "every published port bound to a loopback address (127.0.0.1 or ::1), so FetchML, Redis and MinIO are "
        "reachable only from this host",
        f"`pulumi config set bindAddress 127.0.0.1 --stack {stack}` (or set ip='127.0.0.1' on the port); if public "
        "exposure is intended and reviewed, run with --policy-pack-config FILE, FILE holding "
        '{"loopback-ports": {"allowPublicBind": true}}',
    )


def _validate_ports(args: ResourceValidationArgs, report: ReportViolation) -> None:
    if args.resource_type != CONTAINER or args.get_config().get("allowPublicBind") is True:
        return
    for port in args.props.get("ports") or []:
        problem = port_problem(port, _stack(args))
        if problem:
            report(_message(_subject(args, "container"), *problem), None)


# --- the pack --------------------------------------------------------------------------------------------------


POLICIES: list[Policy] = [
    ResourceValidationPolicy(
        name="persistent-volumes-protected",
        description="Docker volumes hold FetchML's queue and artifacts and must be protected.",
        validate=_validate_volume,
    ),
    ResourceValidationPolicy(
        name="app-images-pinned",
        description="App images must be pinned to a sha-<commit> tag; data-store images to a tag other than latest.",
        validate=_validate_image,
        config_schema=PolicyConfigSchema(
            properties={
                "appRepositories": {
                    "type": "array",
                    "items": {"type": "string"},
                    "default": DEFAULT_APP_REPOSITORIES,
                    "description": "repositories of the API and worker images (full name or last path segments)",
                }
            }
        ),
    ),
    ResourceValidationPolicy(
        name="prod-hipaa",
        description="A prod FetchML container must run with FETCHML_COMPLIANCE_MODE=hipaa.",
        validate=_validate_hipaa,
    ),
    ResourceValidationPolicy(
        name="loopback-ports",
        description="Published container ports must bind a loopback address unless allowPublicBind is configured.",
        validate=_validate_ports,
        config_schema=PolicyConfigSchema(
            properties={
                "allowPublicBind": {
                    "type": "boolean",
                    "default": False,
                    "description": "allow ports published on non-loopback addresses (reviewed public exposure)",
                }
            }
        ),
    ),
]

if __name__ == "__main__":
    PolicyPack(name=PACK, policies=POLICIES, enforcement_level=EnforcementLevel.MANDATORY)
