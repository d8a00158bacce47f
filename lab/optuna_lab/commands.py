"""The lab's verbs: up (idempotent), down, clean, status and the fault handles (stop, kill,
start, disconnect, connect)."""
from __future__ import annotations

import shutil
import time
from typing import Any

from .hosts import (
    create_container,
    inspect_containers,
    mac_of,
    setup_container,
    setup_controller,
    systemd_state,
    wait_for_systemd,
)
from .image import build_image, image_exists, image_ref, remove_build_dir
from .inventory import check_inventory_dir, write_inventory
from .network import connect, ensure_network, host_address, network_attached, remove_network
from .process import locked, podman, require
from .settings import (
    EXTRA_HOST_OFFSETS,
    INVENTORY_MARKER,
    LABEL,
    LABEL_CAPS,
    LABEL_IP,
    LABEL_MAC,
    WORK,
    Lab,
    LabError,
    log,
    rel,
)
from .ssh import authorize_login, ensure_keypair, host_key, wait_for_ssh


def up(lab: Lab) -> None:
    require(lab)
    check_inventory_dir(lab)
    image = build_image(lab)
    with locked(f"lab-{lab.name}"):
        started = time.monotonic()
        subnet = ensure_network(lab)
        existing = inspect_containers(lab)
        # Extra hosts, once started, stay until lab-down (a later plain lab-up keeps them).
        wanted = lab.hosts() + sorted(set(lab.extras()) | (set(existing) & set(EXTRA_HOST_OFFSETS)))
        for host, old in existing.items():
            if host not in wanted:
                log(f"removing {old['Name']} (not in a lab of {lab.workers} workers)")
                podman(lab, "rm", "-f", old["Id"])
        public_key = ensure_keypair(lab)
        for host in wanted:
            ip = host_address(lab, subnet, host)
            c: dict[str, Any] | None = existing.get(host)
            if c and (c["Config"]["Labels"].get(LABEL_IP) != ip
                      or c["Config"]["Labels"].get(LABEL_MAC) != mac_of(lab, host)
                      or c["Config"]["Labels"].get(LABEL_CAPS, "") != lab.s.caps):
                log(f"recreating {c['Name']}: its address or capabilities are not {ip} / {mac_of(lab, host)} / "
                    f"{lab.s.caps}")
                podman(lab, "rm", "-f", c["Id"])
                c = None
            if c and not c["State"]["Running"]:
                log(f"starting {c['Name']} (was {c['State']['Status']})")
                if podman(lab, "start", c["Id"], check=False).returncode != 0:
                    log(f"cannot start {c['Name']}: recreating it")
                    podman(lab, "rm", "-f", c["Id"])
                    c = None
            if c:
                if not network_attached(c, lab.network):
                    log(f"reconnecting {c['Name']} to {lab.network}")
                    connect(lab, host, c)
                if c["ImageName"] != image and c["Image"] != image:
                    log(f"note: {c['Name']} runs {c['ImageName']}, not {image}; "
                        "lab-down + lab-up to move to the new image")
            else:
                stale = podman(lab, "container", "exists", lab.container(host), check=False)
                if stale.returncode == 0:
                    raise LabError(f"a container named {lab.container(host)} exists but is not "
                                   f"labelled {LABEL}={lab.name}; remove it or choose another LAB_NAME")
                create_container(lab, image, host, ip)
        host_keys: dict[str, str] = {}
        for host in wanted:
            name = lab.container(host)
            state = wait_for_systemd(lab, name)
            setup_container(lab, name)
            if host == "controller":
                setup_controller(lab, name)
            if host in lab.hosts():
                authorize_login(lab, name, public_key)
                host_keys[host] = host_key(lab, name)
            if state != "running":
                failed = podman(lab, "exec", name, "systemctl", "--failed", "--no-legend",
                                check=False).stdout.strip()
                log(f"{name}: systemd is {state}; failed units: {failed or '?'}")
        for host in lab.hosts():
            wait_for_ssh(host_address(lab, subnet, host), lab.container(host))
        write_inventory(lab, subnet, host_keys, [h for h in wanted if h in EXTRA_HOST_OFFSETS])
        log(f"lab {lab.name} is up in {time.monotonic() - started:.0f} s: 1 driver, "
            f"{lab.workers} workers on {subnet}; inventory {rel(lab.inventory)}")


def down(lab: Lab, purge: bool) -> None:
    require(lab)
    with locked(f"lab-{lab.name}"):
        for c in inspect_containers(lab).values():
            podman(lab, "rm", "-f", "-t", "5", c["Id"])
            log(f"removed {c['Name']}")
        remove_network(lab)
        inv = lab.inventory
        if (inv / INVENTORY_MARKER).exists():
            shutil.rmtree(inv)
            log(f"removed {rel(inv)}")
    if purge:
        remove_images(lab)


def remove_images(lab: Lab) -> None:
    """The built image of this recipe, unless a container (of any lab) still uses it. A user's
    LAB_IMAGE and images of other recipes are left alone."""
    if lab.s.image:
        log(f"kept LAB_IMAGE={lab.s.image}: not built by the lab")
        return
    ref = image_ref(lab)
    if not image_exists(lab, ref):
        return
    res = podman(lab, "rmi", ref, check=False)
    log(f"removed image {ref}" if res.returncode == 0
        else f"kept image {ref}: a container still uses it")


def clean(lab: Lab) -> None:
    down(lab, purge=True)
    for stale in WORK.glob("build-*"):
        remove_build_dir(stale)
    if (WORK / "debs").exists():
        shutil.rmtree(WORK / "debs")
        log("removed the debootstrap package cache")


def status(lab: Lab, quiet: bool) -> int:
    require(lab)
    containers = inspect_containers(lab)
    healthy = True
    lines = [f"lab {lab.name}: image {image_ref(lab)}, network {lab.network}, "
             f"inventory {rel(lab.inventory)}"]
    for host in lab.hosts() + sorted(set(containers) - set(lab.hosts())):
        c = containers.get(host)
        if not c:
            lines.append(f"  {lab.container(host):28} missing")
            healthy = False
            continue
        running = c["State"]["Running"]
        nets = c.get("NetworkSettings", {}).get("Networks") or {}
        ip = nets.get(lab.network, {}).get("IPAddress") or "disconnected"
        sd = systemd_state(lab, c["Name"]) if running else "-"
        ok = running and ip != "disconnected" and sd in ("running", "degraded")
        healthy &= ok
        lines.append(f"  {c['Name']:28} {host:9} {c['State']['Status']:8} {ip:15} systemd {sd}")
    if not (lab.inventory / "hosts.yml").exists():
        healthy = False
        lines.append("  (no inventory: run lab-up)")
    if not quiet:
        print("\n".join(lines))
    return 0 if healthy else 1


def fault(lab: Lab, verb: str, host: str) -> None:
    require(lab)
    containers = inspect_containers(lab)
    short = host.removeprefix(f"{lab.name}-")
    c = containers.get(short)
    if not c:
        raise LabError(f"no host {host!r} in lab {lab.name} (hosts: {', '.join(sorted(containers))})")
    name = c["Name"]
    if verb == "stop":
        podman(lab, "stop", name)
    elif verb == "kill":
        podman(lab, "kill", "--signal", "KILL", name)
    elif verb == "start":
        podman(lab, "start", name)
        wait_for_systemd(lab, name)
        c = inspect_containers(lab)[short]
        if not network_attached(c, lab.network):
            connect(lab, short, c)
    elif verb == "disconnect":
        if network_attached(c, lab.network):
            podman(lab, "network", "disconnect", lab.network, name)
    elif verb == "connect":
        if not network_attached(c, lab.network):
            connect(lab, short, c)
    log(f"{verb} {name}: done")
