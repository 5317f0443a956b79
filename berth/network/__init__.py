"""Container networking: bridges, addresses, ports, the embedded DNS and per-container /etc files."""
