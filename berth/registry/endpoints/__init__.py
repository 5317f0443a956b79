"""The registry's HTTP endpoints (aiohttp): one thin module per resource over the storage model."""
