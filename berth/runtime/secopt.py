"""``HostConfig.SecurityOpt``: parsed as dockerd parses it, with its error wording.

This host has neither AppArmor nor SELinux. dockerd on such a host accepts ``apparmor=`` and
``label=`` options and applies nothing (its AppArmor setup returns early, and SELinux's label
setup returns empty labels when SELinux is disabled); Berth accepts them the same way, keeps
inspect's ``AppArmorProfile``/``ProcessLabel`` empty, and says in the create warnings that a
requested profile or label is not applied instead of pretending it is.
"""

from __future__ import annotations

import json
import os
from dataclasses import dataclass, field

from berth.errors import InvalidParameter
from berth.runtime import seccomp

_TRUE = ("1", "t", "T", "TRUE", "true", "True")
_FALSE = ("0", "f", "F", "FALSE", "false", "False")


@dataclass
class SecurityOpts:
    no_new_privileges: bool = False
    seccomp: str = ""  # "" (the default), "builtin", "unconfined", or a JSON profile
    apparmor: str = ""
    labels: list[str] = field(default_factory=list)


def _q(s: str) -> str:
    """Go's %q for the strings found here."""
    return json.dumps(s, ensure_ascii=False)


def _bool(opt: str, v: str) -> bool:
    if v in _TRUE:
        return True
    if v in _FALSE:
        return False
    raise InvalidParameter(f"invalid --security-opt 2: {_q(opt)}")


def parse(opts: list[object] | None) -> SecurityOpts:
    out = SecurityOpts()
    for raw in opts or []:
        opt = str(raw)
        if opt == "no-new-privileges":
            out.no_new_privileges = True
            continue
        if opt == "disable":
            out.labels.append("disable")
            continue
        sep = "=" if "=" in opt else (":" if ":" in opt else "")
        if not sep:
            raise InvalidParameter(f"invalid --security-opt 1: {_q(opt)}")
        k, _, v = opt.partition(sep)
        if k == "label":
            out.labels.append(v)
        elif k == "apparmor":
            out.apparmor = v
        elif k == "seccomp":
            out.seccomp = v
        elif k == "no-new-privileges":
            out.no_new_privileges = _bool(opt, v)
        else:
            raise InvalidParameter(f"invalid --security-opt 2: {_q(opt)}")
    return out


def validate(opts: list[object] | None) -> list[str]:
    """Check the options at create; return the warnings for the create response."""
    sec = parse(opts)
    if sec.seccomp not in ("", seccomp.BUILTIN, seccomp.UNCONFINED):
        try:
            seccomp.check_profile(json.loads(sec.seccomp))
        except json.JSONDecodeError as e:
            raise InvalidParameter(f"Decoding seccomp profile failed: {e}") from e
        except ValueError as e:
            raise InvalidParameter(str(e)) from e
    warnings = []
    if sec.apparmor and sec.apparmor != "unconfined":
        why = "Berth does not load AppArmor profiles" if _apparmor_enabled() else \
            "AppArmor is not enabled on this host"
        warnings.append(f"AppArmor profile {_q(sec.apparmor)} is not applied: {why}")
    labels = [x for x in sec.labels if x != "disable"]
    if labels:
        why = "Berth does not set SELinux labels" if _selinux_enabled() else "SELinux is not enabled on this host"
        warnings.append(f"SELinux label options {', '.join(map(_q, labels))} are not applied: {why}")
    return warnings


def _apparmor_enabled() -> bool:
    try:
        with open("/sys/module/apparmor/parameters/enabled") as f:
            return f.read().startswith("Y") and os.path.isdir("/sys/kernel/security/apparmor")
    except OSError:
        return False


def _selinux_enabled() -> bool:
    return os.path.exists("/sys/fs/selinux/enforce")
