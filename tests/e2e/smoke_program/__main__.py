"""The foundation smoke program: one of each kind of thing the real program uses, driven by the real engine."""

import pulumi
import pulumi_docker as docker

from fetchml_infra.gate import HealthGate

config = pulumi.Config()
prefix = config.require("prefix")
image = config.require("image")
port = config.require_int("port")
mode = config.get("complianceMode") or "none"

network = docker.Network("network", name=f"{prefix}-net")
volume = docker.Volume("data", name=f"{prefix}-data", opts=pulumi.ResourceOptions(protect=True))
api_image = docker.RemoteImage("api-image", name=f"ghcr.io/jfraeysd/fetchml-api:{image}", keep_locally=True)
api = docker.Container(
    "api",
    name=f"{prefix}-api",
    image=api_image.image_id,
    envs=[f"FETCHML_COMPLIANCE_MODE={mode}"],
    networks_advanced=[docker.ContainerNetworksAdvancedArgs(name=network.name)],
    volumes=[docker.ContainerVolumeArgs(volume_name=volume.name, container_path="/data")],
    ports=[docker.ContainerPortArgs(internal=9101, external=port, ip="127.0.0.1")],
    opts=pulumi.ResourceOptions(delete_before_replace=True),
)
gate = HealthGate(
    "gate",
    url=f"http://127.0.0.1:{port}/health",
    image=image,
    compliance_mode=mode,
    timeout=30,
    stack=pulumi.get_stack(),
    audit_log=config.require("auditLog"),
    actor="smoke-test",
    rollback_advice="(smoke test)",
    targets=pulumi.Output.all(api.id),
)
pulumi.export("container_id", api.id)
pulumi.export("volume", volume.name)
pulumi.export("reported_compliance_mode", gate.reported_compliance_mode)
pulumi.export("version", gate.version)
