"""The lab's podman network: made and checked by label, the hosts' fixed addresses on it, and
(re)connecting a host with its old address and MAC."""
from __future__ import annotations

import ipaddress
import json
from typing import Any

from .process import podman
from .settings import EXTRA_HOST_OFFSETS, FIRST_HOST_OFFSET, LABEL, LABEL_IP, LABEL_MAC, Lab, LabError, log


def ensure_network(lab: Lab) -> ipaddress.IPv4Network:
    res = podman(lab, "network", "inspect", lab.network, check=False)
    if res.returncode == 0:
        net = json.loads(res.stdout)[0]
        if net.get("labels", {}).get(LABEL) != lab.name:
            raise LabError(f"network {lab.network} exists but was not made by lab {lab.name}; "
                           "remove it or choose another LAB_NAME")
    else:
        args = ["network", "create", "--label", f"{LABEL}={lab.name}"]
        if lab.s.subnet:
            args += ["--subnet", lab.s.subnet]
        podman(lab, *args, lab.network)
        log(f"created network {lab.network}")
        net = json.loads(podman(lab, "network", "inspect", lab.network).stdout)[0]
    if not net.get("dns_enabled", False):
        raise LabError(f"network {lab.network} has no DNS (podman needs netavark + aardvark-dns, "
                       "Debian packages netavark and aardvark-dns)")
    subnets = [ipaddress.ip_network(s["subnet"]) for s in net.get("subnets", [])]
    v4 = [s for s in subnets if isinstance(s, ipaddress.IPv4Network)]
    if not v4:
        raise LabError(f"network {lab.network} has no IPv4 subnet")
    wanted = lab.s.subnet
    if wanted and ipaddress.ip_network(wanted, strict=False) != v4[0]:
        raise LabError(f"network {lab.network} has subnet {v4[0]}, not LAB_SUBNET={wanted}: "
                       "lab-down first to change it")
    return v4[0]


def remove_network(lab: Lab) -> None:
    """The lab's network, if this lab made it (by label)."""
    res = podman(lab, "network", "inspect", lab.network, check=False)
    if res.returncode == 0:
        if json.loads(res.stdout)[0].get("labels", {}).get(LABEL) == lab.name:
            podman(lab, "network", "rm", lab.network)
            log(f"removed network {lab.network}")
        else:
            log(f"kept network {lab.network}: not made by lab {lab.name}")


def address_of(subnet: ipaddress.IPv4Network, index: int) -> str:
    addr = subnet.network_address + FIRST_HOST_OFFSET + index
    if addr not in subnet or addr == subnet.broadcast_address:
        raise LabError(f"subnet {subnet} is too small for {index + 1} hosts")
    return str(addr)


def host_address(lab: Lab, subnet: ipaddress.IPv4Network, host: str) -> str:
    if host in EXTRA_HOST_OFFSETS:
        return str(subnet.network_address + EXTRA_HOST_OFFSETS[host])
    return address_of(subnet, lab.hosts().index(host))


def network_attached(c: dict[str, Any], network: str) -> bool:
    return network in (c.get("NetworkSettings", {}).get("Networks") or {})


def connect(lab: Lab, host: str, c: dict[str, Any]) -> None:
    labels = c["Config"]["Labels"]
    podman(lab, "network", "connect", "--ip", labels[LABEL_IP], "--mac-address", labels[LABEL_MAC],
           "--alias", host, lab.network, c["Name"])
