"""The table of ``berth`` commands: where each lives and its one-line help (click-free, so the
top-level help needs no import of click or of any command module)."""

from __future__ import annotations

COMMANDS: dict[str, tuple[str, str]] = {
    # name: ("module:function", short help)  -- short help kept here so --help imports nothing
    "attach": ("berth.cli.attach:attach", "Attach local standard streams to a running container"),
    "build": ("berth.cli.build:build", "Build an image from a Dockerfile"),
    "commit": ("berth.cli.containers:commit", "Create a new image from a container's changes"),
    "cp": ("berth.cli.cp:cp", "Copy files/folders between a container and the local filesystem"),
    "create": ("berth.cli.run:create", "Create a new container"),
    "diff": ("berth.cli.containers:diff", "Inspect changes to files or directories on a container's filesystem"),
    "events": ("berth.cli.system:events", "Get real time events from the server"),
    "exec": ("berth.cli.run:exec_", "Execute a command in a running container"),
    "export": ("berth.cli.containers:export", "Export a container's filesystem as a tar archive"),
    "history": ("berth.cli.images:history", "Show the history of an image"),
    "images": ("berth.cli.images:images", "List images"),
    "import": ("berth.cli.images:import_", "Import the contents from a tarball to create a filesystem image"),
    "info": ("berth.cli.system:info", "Display system-wide information"),
    "inspect": ("berth.cli.system:inspect", "Return low-level information on Docker objects"),
    "kill": ("berth.cli.containers:kill", "Kill one or more running containers"),
    "load": ("berth.cli.images:load", "Load an image from a tar archive or STDIN"),
    "login": ("berth.cli.auth:login", "Log in to a registry"),
    "logout": ("berth.cli.auth:logout", "Log out from a registry"),
    "logs": ("berth.cli.containers:logs", "Fetch the logs of a container"),
    "pause": ("berth.cli.containers:pause", "Pause all processes within one or more containers"),
    "port": ("berth.cli.containers:port", "List port mappings or a specific mapping for the container"),
    "ps": ("berth.cli.containers:ps", "List containers"),
    "pull": ("berth.cli.images:pull", "Download an image from a registry"),
    "push": ("berth.cli.images:push", "Upload an image to a registry"),
    "rename": ("berth.cli.containers:rename", "Rename a container"),
    "restart": ("berth.cli.containers:restart", "Restart one or more containers"),
    "rm": ("berth.cli.containers:rm", "Remove one or more containers"),
    "rmi": ("berth.cli.images:rmi", "Remove one or more images"),
    "run": ("berth.cli.run:run", "Create and run a new container from an image"),
    "save": ("berth.cli.images:save", "Save one or more images to a tar archive (streamed to STDOUT by default)"),
    "start": ("berth.cli.run:start", "Start one or more stopped containers"),
    "stats": ("berth.cli.containers:stats", "Display a live stream of container(s) resource usage statistics"),
    "stop": ("berth.cli.containers:stop", "Stop one or more running containers"),
    "tag": ("berth.cli.images:tag", "Create a tag TARGET_IMAGE that refers to SOURCE_IMAGE"),
    "top": ("berth.cli.containers:top", "Display the running processes of a container"),
    "unpause": ("berth.cli.containers:unpause", "Unpause all processes within one or more containers"),
    "update": ("berth.cli.containers:update", "Update configuration of one or more containers"),
    "version": ("berth.cli.system:version", "Show the Berth version information"),
    "wait": ("berth.cli.containers:wait", "Block until one or more containers stop, then print their exit codes"),
    # management commands
    "container": ("berth.cli.groups:container", "Manage containers"),
    "image": ("berth.cli.groups:image", "Manage images"),
    "network": ("berth.cli.network:network", "Manage networks"),
    "system": ("berth.cli.groups:system", "Manage Berth"),
    "volume": ("berth.cli.volumes:volume", "Manage volumes"),
    # berth's own
    "check": ("berth.cli.app:check", "Verify a stopped daemon's data root"),
    "completion": ("berth.cli.completion:completion", "Print a shell completion script (bash or zsh)"),
    "registry": ("berth.cli.app:registry", "Berth's registry server: serve, gc"),
}


GLOBAL_OPTIONS = [
    ("--config DIR", "Location of client config files (DOCKER_CONFIG, default ~/.docker)"),
    ("-D, --debug", "Enable debug mode (tracebacks on internal errors)"),
    ("-H, --host HOST", "Daemon socket to connect to (BERTH_HOST, DOCKER_HOST, else unix:///var/run/berth.sock)"),
    ("-l, --log-level LEVEL", "Set the logging level (accepted for compatibility)"),
    ("--tls", "Use TLS; implied by --tlsverify"),
    ("--tlscacert PATH", "Trust certs signed only by this CA"),
    ("--tlscert PATH", "Path to TLS certificate file"),
    ("--tlskey PATH", "Path to TLS key file"),
    ("--tlsverify", "Use TLS and verify the remote"),
    ("-v, --version", "Print version information and quit"),
    ("--help", "Show this message and exit."),
]


def top_help() -> str:
    w = max(len(n) for n, _ in GLOBAL_OPTIONS) + 2
    cw = max(len(n) for n in COMMANDS) + 2
    lines = ["Usage: berth [OPTIONS] COMMAND [ARGS]...", "",
             "  Berth: build, ship and run containers (a Docker-compatible CLI).", "", "Options:"]
    lines += [f"  {n.ljust(w)}{h}" for n, h in GLOBAL_OPTIONS]
    lines += ["", "Commands:"]
    lines += [f"  {n.ljust(cw)}{COMMANDS[n][1]}" for n in sorted(COMMANDS)]
    lines += ["", "Run 'berth COMMAND --help' for more information on a command."]
    return "\n".join(lines) + "\n"
