"""The command line of lab/lab.py: its verbs and options, and `main`."""
from __future__ import annotations

import argparse
import os
import sys

from .commands import clean, down, fault, status, up
from .controller import on_controller, sync_controller
from .image import build_image, image_ref
from .process import require
from .settings import Lab, LabError, load_settings, rel, validate_name

DESCRIPTION = "A multi-host lab of systemd containers (one driver, N workers) on a private podman network."
FAULT_VERBS = (("stop", "stop a host (systemd shuts down cleanly)"),
               ("kill", "SIGKILL a host's container"),
               ("start", "start a stopped/killed host again, wait for systemd"),
               ("disconnect", "cut a host off the lab network"),
               ("connect", "reconnect a host, with its old address and name"))


def parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="lab/lab.py", description=DESCRIPTION)
    sub = parser.add_subparsers(dest="verb", required=True)
    sub.add_parser("image", help="build the lab image (cached by recipe hash)")
    sub.add_parser("image-ref", help="print the image the lab runs")
    sub.add_parser("inventory-path", help="print where the lab's inventory is written")
    sub.add_parser("up", help="create/start the lab and write its inventory (idempotent)")
    p = sub.add_parser("down", help="remove this lab's containers, network and inventory")
    p.add_argument("--purge", action="store_true", help="also remove the built lab image, if unused")
    sub.add_parser("clean", help="down --purge, and drop build leftovers and package cache")
    p = sub.add_parser("status", help="show the lab; exit 1 unless every host is up")
    p.add_argument("-q", "--quiet", action="store_true")
    sub.add_parser("sync-controller", help="copy the checkout and the lab's inventory to the controller")
    p = sub.add_parser("on-controller", help="run a command in the checkout on the clean controller")
    p.add_argument("command", nargs=argparse.REMAINDER, help="-- COMMAND [ARG...]")
    for verb, text in FAULT_VERBS:
        p = sub.add_parser(verb, help=text)
        p.add_argument("host", help="driver, worker1, ... or the container name")
    return parser


def dispatch(lab: Lab, args: argparse.Namespace) -> int:
    """Run one verb; its exit status."""
    if args.verb == "image":
        require(lab)
        print(build_image(lab))
    elif args.verb == "image-ref":
        print(image_ref(lab))
    elif args.verb == "inventory-path":
        print(rel(lab.inventory))
    elif args.verb == "up":
        up(lab)
    elif args.verb == "down":
        down(lab, purge=args.purge or os.environ.get("LAB_PURGE") == "1")
    elif args.verb == "clean":
        clean(lab)
    elif args.verb == "status":
        return status(lab, args.quiet)
    elif args.verb == "sync-controller":
        require(lab)
        sync_controller(lab)
    elif args.verb == "on-controller":
        require(lab)
        command = args.command[1:] if args.command[:1] == ["--"] else args.command
        return on_controller(lab, command)
    else:
        fault(lab, args.verb, args.host)
    return 0


def main(argv: list[str] | None = None) -> int:
    args = parser().parse_args(argv)
    try:
        lab = Lab(load_settings())
        validate_name(lab.name)
        return dispatch(lab, args)
    except LabError as exc:
        print(f"lab: error: {exc}", file=sys.stderr)
        return 1
    except KeyboardInterrupt:
        return 130
