"""Host ports a stack needs: who holds them. ``published`` and ``listener`` are pure; ``port_conflicts`` is the
thin edge over a socket bind, the docker client and ``ss``."""

from __future__ import annotations

import errno
import re
import shutil
import socket
import subprocess
from collections.abc import Iterable, Mapping
from typing import Any

from fetchml_infra.host import Needs, inspect_containers, run_docker

PORT_SETTINGS = {
    "api": "apiHostPort",
    "redis": "redisHostPort",
    "minio": "minioHostPort",
    "proxy-admin": "proxyAdminPort",
}
WILDCARDS = {"", "*", "0.0.0.0", "::"}


def _overlap(a: str, b: str) -> bool:
    a, b = a.strip("[]"), b.strip("[]")
    return a == b or a in WILDCARDS or b in WILDCARDS


def published(objs: Iterable[Mapping[str, Any]]) -> list[tuple[str, str, str, int]]:
    """(container id, name, host ip, host port) of every port the inspected containers publish."""
    out: set[tuple[str, str, str, int]] = set()
    for o in objs:
        cid, name = str(o["Id"]), str(o.get("Name", "")).lstrip("/")
        maps = [(o.get("NetworkSettings") or {}).get("Ports"), (o.get("HostConfig") or {}).get("PortBindings")]
        for bindings in (b for m in maps for b in (m or {}).values()):
            for b in bindings or []:
                if str(b.get("HostPort", "")).isdigit():
                    out.add((cid, name, str(b.get("HostIp", "")), int(b["HostPort"])))
    return sorted(out)


def listener(ss_output: str, address: str, port: int) -> str | None:
    """'pid N (command)' of the process `ss -Hltnp` shows listening on address:port, if it names one."""
    for line in ss_output.splitlines():
        fields = line.split()
        if len(fields) < 4:
            continue
        host, _, lport = fields[3].rpartition(":")
        if lport != str(port) or not _overlap(host.split("%")[0], address):
            continue
        m = re.search(r'\("([^"]+)",pid=(\d+)', line)
        return f"pid {m.group(2)} ({m.group(1)})" if m else "a process ss cannot name (not root?)"
    return None


def _bind_error(address: str, port: int) -> OSError | None:
    family = socket.AF_INET6 if ":" in address else socket.AF_INET
    with socket.socket(family, socket.SOCK_STREAM) as s:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)  # as a server would: TIME_WAIT is not "busy"
        try:
            s.bind((address, port))
        except OSError as exc:
            return exc
    return None


def port_conflicts(needs: Needs, managed_container_ids: set[str]) -> list[str]:
    """One message per needed host port held by something the stack does not manage (with --iptables=false,
    docker-proxy holds a published port, so a managed container publishing it is fine)."""
    problems = []
    publishers: list[tuple[str, str, str, int]] | None = None
    for address, port, which in needs.ports:
        where, setting = f"{address}:{port}", PORT_SETTINGS.get(which, which)
        fix = f"run `pulumi config set {setting} <free port> --stack {needs.stack}`"
        error = _bind_error(address, port)
        if error is None or error.errno == errno.EACCES:  # a privileged port: the engine binds it as root
            continue
        if error.errno != errno.EADDRINUSE:
            problems.append(f"{where} ({setting}) cannot be bound: {error.strerror}; check bindAddress, or {fix}")
            continue
        if publishers is None:
            publishers = published(inspect_containers(run_docker("ps", "-q", "--no-trunc").split()))
        holders = [(cid, name) for cid, name, ip, p in publishers if p == port and _overlap(ip, address)]
        if any(cid in managed_container_ids for cid, _ in holders):
            continue
        if holders:
            cid, name = holders[0]
            holder = f"container '{name}' ({cid[:12]}), which stack '{needs.stack}' does not manage"
        else:
            ss = subprocess.run(["ss", "-Hltnp"], capture_output=True, text=True) if shutil.which("ss") else None
            holder = (listener(ss.stdout, address, port) if ss else None) or "a process ss does not show"
        problems.append(f"{where} ({setting}) is in use by {holder}; stop it, or {fix}")
    return problems
