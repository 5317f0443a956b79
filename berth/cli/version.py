"""``berth version``: Docker's layout (Client / Server sections) without click, for the fast path."""

from __future__ import annotations

import os
import sys

TYPE_CHECKING = False  # typing costs ~3 ms to import: annotations only on the hot path
if TYPE_CHECKING:
    from typing import Any

CLIENT_TEMPLATE = """Client:
 Version:           {{.Client.Version}}
 API version:       {{.Client.ApiVersion}}
 Python version:    {{.Client.GoVersion}}
 OS/Arch:           {{.Client.Os}}/{{.Client.Arch}}
"""
SERVER_TEMPLATE = """
Server: {{.Server.Platform.Name}}
 Engine:
  Version:          {{.Server.Version}}
  API version:      {{.Server.ApiVersion}} (minimum version {{.Server.MinAPIVersion}})
  Runtime version:  {{.Server.GoVersion}}
  Git commit:       {{.Server.GitCommit}}
  OS/Arch:          {{.Server.Os}}/{{.Server.Arch}}
  Kernel Version:   {{.Server.KernelVersion}}
{{- range .Server.Components}}{{if ne .Name "Engine"}}
 {{.Name}}:
  Version:          {{.Version}}{{end}}{{end}}
"""


def client_info() -> dict[str, Any]:
    import berth

    m = os.uname().machine
    arch = {"x86_64": "amd64", "aarch64": "arm64"}.get(m, m)
    return {"Version": berth.__version__, "ApiVersion": berth.API_VERSION,
            "GoVersion": "python" + ".".join(map(str, sys.version_info[:3])), "Os": "linux", "Arch": arch}


def show_version(client: Any, fmt: str | None) -> int:
    """Print the version; the server half is left out (exit 1) when the daemon cannot be reached,
    as docker does."""
    from berth.cli.client import APIError, ConnectError
    from berth.cli.fmt import render_one

    data: dict[str, Any] = {"Client": client_info(), "Server": None}
    err: Exception | None = None
    try:
        data["Server"] = client.get("/version")
    except (ConnectError, APIError) as e:
        err = e
    if fmt:
        sys.stdout.write(render_one(fmt, data) + "\n")
    else:
        sys.stdout.write(render_one(CLIENT_TEMPLATE, data))
        if data["Server"] is not None:
            srv = data["Server"]
            srv.setdefault("Platform", {"Name": ""})
            sys.stdout.write(render_one(SERVER_TEMPLATE, data))
    if err is not None:
        sys.stdout.flush()
        print(str(err), file=sys.stderr)
        return 1
    return 0
