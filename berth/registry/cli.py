"""``python -m berth.registry serve|gc``: run the registry, or collect garbage in its root."""

from __future__ import annotations

import argparse
import asyncio
import json
import logging
import signal
import sys

from berth.registry.endpoints.auth import SERVICE, auth_from_spec
from berth.registry.model.gc import collect
from berth.registry.model.housekeeping import expire_uploads
from berth.registry.model.storage import FilesystemStorage
from berth.registry.policy import Policy
from berth.registry.proxy.upstream import check_url, parse_duration
from berth.registry.server import DEFAULT_UPLOAD_MAX_AGE, ProxyOptions, serve
from berth.registry.tokenkey import load_or_create_key


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m berth.registry", description="Berth OCI registry")
    sub = p.add_subparsers(dest="command", required=True)
    s = sub.add_parser("serve", help="serve the OCI Distribution API")
    s.add_argument("--config", help="JSON file with any of these options by name (addr, root, auth, tls_cert, "
                                    "...); flags given here win")
    s.add_argument("--addr", default=None, help="HOST:PORT to listen on (default 127.0.0.1:5000)")
    s.add_argument("--root", default=None, help="storage directory (required, here or in --config)")
    s.add_argument("--auth", help="htpasswd:FILE (Basic) or token:FILE (Bearer tokens from /token, users in FILE)")
    s.add_argument("--token-secret-file", help="HMAC key for tokens (default: ROOT/_auth/token.key, created once)")
    s.add_argument("--auth-policy", help="TOML file of per-repository rules (users/groups -> patterns -> actions)")
    s.add_argument("--proxy-remote-url", help="run as a pull-through cache of this upstream registry URL")
    s.add_argument("--proxy-username", default="", help="user name for the upstream")
    s.add_argument("--proxy-password-file", help="file holding the password for the upstream")
    s.add_argument("--proxy-ttl", default="168h", help="re-check cached tags upstream after this long (168h)")
    s.add_argument("--upload-max-age", default="24h", help="remove upload sessions idle this long (24h)")
    s.add_argument("--log-format", default="text", choices=["text", "json"], help="one line per request")
    s.add_argument("--token-realm", help="realm URL in Bearer challenges (default: this server's /token)")
    s.add_argument("--token-service", default=SERVICE, help="service name in tokens (default %(default)s)")
    s.add_argument("--tls-cert", help="PEM certificate (with --tls-key: serve HTTPS)")
    s.add_argument("--tls-key", help="PEM private key")
    s.add_argument("--anonymous-read", action="store_true", help="allow pulls and catalog without credentials")
    s.add_argument("--log-level", default="INFO")
    g = sub.add_parser("gc", help="delete unreferenced blobs (safe while the registry serves)")
    g.add_argument("--root", required=True)
    g.add_argument("--dry-run", action="store_true", help="report, delete nothing")
    g.add_argument("--delete-untagged", action="store_true", help="also delete manifests no tag reaches")
    g.add_argument("--grace-seconds", type=float, default=3600.0,
                   help="also keep anything written this long before GC started, so a push in flight "
                        "never loses a blob it uploaded (default %(default)s)")
    g.add_argument("--upload-max-age", default="24h", help="also remove upload sessions idle this long (24h)")
    return p


async def _serve(args: argparse.Namespace) -> None:
    policy = Policy.load(args.auth_policy) if args.auth_policy else None
    if policy is not None and not args.auth:
        raise ValueError("--auth-policy needs --auth (htpasswd:FILE or token:FILE) to know who the caller is")
    proxy = None
    if args.proxy_remote_url:
        password = ""
        if args.proxy_password_file:
            with open(args.proxy_password_file) as pf:
                password = pf.read().strip()
        proxy = ProxyOptions(check_url(args.proxy_remote_url), args.proxy_username, password,
                             parse_duration(args.proxy_ttl))
    upload_max_age = parse_duration(args.upload_max_age)
    auth = None
    if args.auth:
        secret = None
        if args.token_secret_file:
            with open(args.token_secret_file, "rb") as f:
                secret = f.read().strip()
        elif args.auth.startswith("token:"):
            secret = load_or_create_key(args.root)
        auth = auth_from_spec(args.auth, token_secret=secret, token_realm=args.token_realm,
                              service=args.token_service, policy=policy)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    await serve(args.addr, args.root, args.tls_cert, args.tls_key, auth, args.anonymous_read,
                ready=lambda url: print(f"listening on {url}", flush=True), stop=stop, proxy=proxy,
                upload_max_age=upload_max_age or DEFAULT_UPLOAD_MAX_AGE, log_format=args.log_format)


def _apply_config(parser: argparse.ArgumentParser, args: argparse.Namespace) -> None:
    """Options from --config fill in what the command line left unset."""
    if args.config:
        try:
            with open(args.config) as f:
                cfg = json.load(f)
        except (OSError, json.JSONDecodeError) as e:
            parser.error(f"--config {args.config}: {e}")
        if not isinstance(cfg, dict):
            parser.error(f"--config {args.config}: must be a JSON object")
        for key, value in cfg.items():
            attr = key.replace("-", "_")
            if not hasattr(args, attr) or attr in ("command", "config"):
                parser.error(f"--config {args.config}: unknown option {key!r}")
            if getattr(args, attr) in (None, False):
                setattr(args, attr, value)
    if args.addr is None:
        args.addr = "127.0.0.1:5000"
    if not args.root:
        parser.error("serve: --root is required (on the command line or in --config)")


def main(argv: list[str] | None = None) -> int:
    parser = _parser()
    args = parser.parse_args(argv)
    if args.command == "serve":
        _apply_config(parser, args)
        logging.basicConfig(level=args.log_level.upper(), format="%(asctime)s %(levelname)s %(name)s %(message)s")
        # Request lines are already complete records (common log format or JSON): print them bare.
        access = logging.getLogger("berth.registry.access")
        handler = logging.StreamHandler()
        handler.setFormatter(logging.Formatter("%(message)s"))
        access.addHandler(handler)
        access.propagate = False
        try:
            asyncio.run(_serve(args))
        except (ValueError, OSError) as e:
            print(f"error: {e}", file=sys.stderr)
            return 1
        return 0
    try:
        max_age = parse_duration(args.upload_max_age)
    except ValueError as e:
        parser.error(str(e))
    expired = expire_uploads(FilesystemStorage(args.root), max_age, dry_run=args.dry_run)
    report = collect(args.root, dry_run=args.dry_run, delete_untagged=args.delete_untagged,
                     grace_seconds=args.grace_seconds)
    out = report.to_dict()
    out["uploads_expired"] = expired.uploads_removed
    print(json.dumps(out, indent=2))
    return 0
