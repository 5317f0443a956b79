"""Per-repository access policy (``--auth-policy FILE``, TOML): who may pull, push or delete what.

::

    [groups]
    team = ["alice", "bob"]

    [[allow]]                      # one table per rule; a caller gets the union of the rules naming it
    users = ["alice"]              # user names; "*" is any logged-in user
    groups = ["team"]              # or members of these groups
    anonymous = false              # true: also callers without credentials
    repositories = ["alice/*", "{user}/*"]   # glob patterns; {user} is the caller's own name
    actions = ["pull", "push", "delete"]

Anything no rule allows is refused. Every logged-in user may list the catalog (it shows only what they
may pull); anonymous callers may when some rule allows anonymous access.
"""

from __future__ import annotations

import tomllib
from dataclasses import dataclass
from fnmatch import fnmatchcase
from typing import Any

ACTIONS = ("pull", "push", "delete")
_RULE_KEYS = {"users", "groups", "anonymous", "repositories", "actions"}


class PolicyError(ValueError):
    pass


@dataclass(frozen=True)
class Rule:
    users: frozenset[str]
    groups: frozenset[str]
    anonymous: bool
    repositories: tuple[str, ...]
    actions: frozenset[str]


def _strings(value: Any, where: str) -> list[str]:
    if not isinstance(value, list) or not all(isinstance(v, str) and v for v in value):
        raise PolicyError(f"{where}: must be a list of non-empty strings")
    return list(value)


class Policy:
    def __init__(self, rules: list[Rule], groups: dict[str, frozenset[str]]) -> None:
        self.rules = rules
        self.groups = groups

    @classmethod
    def load(cls, path: str) -> Policy:
        try:
            with open(path, "rb") as f:
                doc = tomllib.load(f)
        except OSError as e:
            raise PolicyError(f"--auth-policy {path}: {e.strerror or e}") from None
        except tomllib.TOMLDecodeError as e:
            raise PolicyError(f"--auth-policy {path}: syntax error: {e}") from None  # names line and column
        try:
            return cls.from_dict(doc)
        except PolicyError as e:
            raise PolicyError(f"--auth-policy {path}: {e}") from None

    @classmethod
    def from_dict(cls, doc: dict[str, Any]) -> Policy:
        unknown = set(doc) - {"groups", "allow"}
        if unknown:
            raise PolicyError(f"unknown top-level key(s) {sorted(unknown)}; expected [groups] and [[allow]]")
        raw_groups = doc.get("groups", {})
        if not isinstance(raw_groups, dict):
            raise PolicyError("[groups] must be a table of name = [users]")
        groups = {g: frozenset(_strings(v, f"groups.{g}")) for g, v in raw_groups.items()}
        raw_rules = doc.get("allow", [])
        if not isinstance(raw_rules, list):
            raise PolicyError("allow must be an array of tables ([[allow]])")
        rules: list[Rule] = []
        for i, r in enumerate(raw_rules, 1):
            where = f"rule {i} ([[allow]] number {i})"
            if not isinstance(r, dict):
                raise PolicyError(f"{where}: must be a table")
            extra = set(r) - _RULE_KEYS
            if extra:
                raise PolicyError(f"{where}: unknown key(s) {sorted(extra)}")
            users = _strings(r.get("users", []), f"{where}.users")
            gs = _strings(r.get("groups", []), f"{where}.groups")
            for g in gs:
                if g not in groups:
                    raise PolicyError(f"{where}: group {g!r} is not defined in [groups]")
            anonymous = r.get("anonymous", False)
            if not isinstance(anonymous, bool):
                raise PolicyError(f"{where}.anonymous: must be true or false")
            repos = _strings(r.get("repositories", []), f"{where}.repositories")
            if not repos:
                raise PolicyError(f"{where}: repositories is required")
            actions = _strings(r.get("actions", []), f"{where}.actions")
            bad = [a for a in actions if a not in ACTIONS and a != "*"]
            if bad or not actions:
                raise PolicyError(f"{where}.actions: expected some of {list(ACTIONS)} or '*', got {actions}")
            acts = frozenset(ACTIONS) if "*" in actions else frozenset(actions)
            if not users and not gs and not anonymous:
                raise PolicyError(f"{where}: names nobody (set users, groups or anonymous = true)")
            rules.append(Rule(frozenset(users), frozenset(gs), anonymous, tuple(repos), acts))
        return cls(rules, groups)

    def _applies(self, rule: Rule, user: str | None) -> bool:
        if rule.anonymous:
            return True  # what anyone may do, a logged-in user may do too
        if user is None:
            return False
        if user in rule.users or "*" in rule.users:
            return True
        return any(user in self.groups[g] for g in rule.groups)

    def patterns(self, user: str | None) -> list[tuple[str, frozenset[str]]]:
        """(repository glob, actions) pairs for ``user`` (None: anonymous), ``{user}`` filled in."""
        out: list[tuple[str, frozenset[str]]] = []
        for rule in self.rules:
            if self._applies(rule, user):
                out += [(p.replace("{user}", user or ""), rule.actions) for p in rule.repositories
                        if user is not None or "{user}" not in p]
        return out

    def actions(self, user: str | None, repository: str) -> set[str]:
        return {a for pattern, acts in self.patterns(user) if fnmatchcase(repository, pattern) for a in acts}

    def may_list_catalog(self, user: str | None) -> bool:
        return user is not None or any(r.anonymous for r in self.rules)
