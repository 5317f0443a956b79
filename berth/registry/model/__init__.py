"""The registry's storage model: blobs, manifests, tags, referrers, uploads and GC over the registry root.

Pure Python with no HTTP framework; the endpoints (:mod:`berth.registry.endpoints`) sit on top of it
through :class:`berth.registry.model.registry.RegistryModel`.
"""
