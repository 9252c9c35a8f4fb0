"""`promptpix projects ...`, `promptpix keys ...`, `promptpix sign URL`: the control plane
from the command line, against the configured database, with no gateway running.

Answers are JSON on standard output; a key or a signing secret is shown once, there.
"""

from __future__ import annotations

import argparse
import asyncio
import sys
from typing import Any
from urllib.parse import urlsplit

import msgspec

from promptpix.cache.backends import build_backends
from promptpix.cache.control import ControlError

from .api.models import KeyBody, ProjectBody, ProjectPatch
from .config import Config, ConfigError
from .control import Control
from .errors import GatewayError
from .params import split_query
from .signing import MODES, SIG, sign
from .urls import pin_ratio, query


def add_commands(sub: Any) -> None:
    projects = sub.add_parser("projects", help="create, list, show and change projects")
    psub = projects.add_subparsers(dest="action", required=True)
    create = psub.add_parser("create", help="create a project")
    create.add_argument("slug")
    _project_options(create)
    psub.add_parser("list", help="list the projects")
    show = psub.add_parser("show", help="one project, and this month's usage")
    show.add_argument("slug")
    update = psub.add_parser("update", help="change a project")
    update.add_argument("slug")
    _project_options(update)

    keys = sub.add_parser("keys", help="create, list and revoke a project's API keys")
    ksub = keys.add_subparsers(dest="action", required=True)
    kcreate = ksub.add_parser("create", help="a new key (shown once)")
    kcreate.add_argument("slug")
    kcreate.add_argument("--name", default="")
    kcreate.add_argument(
        "--scopes", default="generate,read,assets", help="comma-separated (generate,read,assets)"
    )
    klist = ksub.add_parser("list", help="the project's keys (never a key itself)")
    klist.add_argument("slug")
    revoke = ksub.add_parser("revoke", help="revoke a key")
    revoke.add_argument("slug")
    revoke.add_argument("id")

    signer = sub.add_parser("sign", help="print a live URL with its signature added")
    signer.add_argument("url", help="a /i/PROJECT?... URL (absolute or a path)")
    signer.add_argument("--secret", help="sign with this secret instead of the project's newest")
    signer.add_argument("--mode", choices=MODES, help="default: the project's signing mode")


def _project_options(p: argparse.ArgumentParser) -> None:
    p.add_argument("--name")
    p.add_argument("--style")
    p.add_argument("--system-prompt")
    p.add_argument("--signing", choices=("off", "required", "generation"))
    p.add_argument("--quota", help="generations a month, or 'none'")
    p.add_argument("--rate-limit", help="misses a minute per client IP, or 'none'")
    p.add_argument("--budget", help="USD a month, or 'none'")
    p.add_argument("--generators", help="a subset of the chain, comma-separated, or 'all'")
    p.add_argument("--enhance", choices=("on", "off"))
    p.add_argument("--semantic-reuse", choices=("on", "off"))
    p.add_argument("--on-failure", choices=("placeholder", "error"))


def _fields(args: argparse.Namespace) -> dict[str, Any]:
    """The options given, as a project body's fields."""
    out: dict[str, Any] = {}
    for name in ("name", "style", "system_prompt", "signing", "on_failure"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name)
    for name in ("enhance", "semantic_reuse"):
        if getattr(args, name) is not None:
            out[name] = getattr(args, name) == "on"
    for name, field, kind in (
        ("quota", "generations_per_month", int),
        ("rate_limit", "misses_per_minute", int),
        ("budget", "usd_per_month", float),
    ):
        raw = getattr(args, name)
        if raw is not None:
            out[name] = None if raw == "none" else {field: kind(raw)}
    if args.generators is not None:
        out["generators"] = None if args.generators == "all" else args.generators.split(",")
    return out


def control_command(args: argparse.Namespace) -> int:
    try:
        config = Config.from_env()
    except ConfigError as exc:
        print(f"promptpix: {exc}", file=sys.stderr)
        return 2
    if args.command == "sign" and args.secret:
        return _print(_signed(args.url, [args.secret], args.mode or "required"))
    try:
        return asyncio.run(_run(config, args))
    except (GatewayError, ControlError) as exc:
        print(f"promptpix: {getattr(exc, 'message', exc)}", file=sys.stderr)
        return 1
    except (msgspec.ValidationError, ValueError) as exc:
        print(f"promptpix: {exc}", file=sys.stderr)
        return 2
    except OSError as exc:  # the database cannot be reached
        print(f"promptpix: the database cannot be reached: {exc}", file=sys.stderr)
        return 1


async def _run(config: Config, args: argparse.Namespace) -> int:
    backends = build_backends(config.cache)
    try:
        await backends.control.start()
        control = Control(backends.control, config.generators.generators)
        return _print(await _act(control, args))
    finally:
        await backends.close()


async def _act(control: Control, args: argparse.Namespace) -> Any:
    store = control.store
    if args.command == "sign":
        path = urlsplit(args.url).path
        slug = path.removeprefix("/i/").removeprefix("/a/").split("/")[0]
        project = await store.load(slug)
        if project is None:
            raise ControlError(f"no project named '{slug}'")
        if not project.secrets:
            raise ControlError(f"project '{slug}' has no signing secret (its signing is off)")
        mode = args.mode or (project.signing if project.signing != "off" else "required")
        return _signed(args.url, list(project.secrets), mode)
    if args.command == "keys":
        if args.action == "create":
            body = {"name": args.name, "scopes": args.scopes.split(",")}
            return await control.create_key(args.slug, msgspec.convert(body, KeyBody))
        if args.action == "list":
            return {"keys": await control.list_keys(args.slug)}
        await control.revoke_key(args.slug, args.id)
        return {"id": args.id, "revoked": True}
    if args.action == "create":
        body = msgspec.convert({"slug": args.slug, **_fields(args)}, ProjectBody)
        return await control.create(body)
    if args.action == "list":
        return {"projects": await control.all()}
    if args.action == "show":
        return {
            "project": await control.get(args.slug),
            "usage": await control.usage(args.slug),
        }
    patch = msgspec.convert(_fields(args), ProjectPatch)
    return await control.update(args.slug, patch)


def _signed(url: str, secrets: list[str], mode: Any) -> dict[str, str]:
    parts = urlsplit(url)
    params = pin_ratio({k: v for k, v in split_query(parts.query).items() if k != SIG}, mode)
    params[SIG] = sign(secrets[-1], parts.path, params, mode)
    head = f"{parts.scheme}://{parts.netloc}" if parts.netloc else ""
    return {"url": f"{head}{parts.path}?{query(params)}", "mode": mode}


def _print(value: Any) -> int:
    sys.stdout.write(msgspec.json.format(msgspec.json.encode(value), indent=2).decode() + "\n")
    return 0
