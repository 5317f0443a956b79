"""Pull-through cache mode: the registry as a mirror of an upstream registry."""
