"""Overlay mounts by both code paths: fsconfig(lowerdir+) and classic mount(2) with short links."""

from __future__ import annotations

import os

import pytest

from berth.layers import mount as mnt
from berth.layers.drivers import OverlayDriver


@pytest.mark.parametrize("lowerdir_plus", [True, False], ids=["fsconfig", "classic"])
def test_overlay_of_many_layers(tmp_path, monkeypatch, lowerdir_plus: bool) -> None:  # type: ignore[no-untyped-def]
    root = "/var/tmp/berth-mount-test-" + os.urandom(4).hex()  # overlay needs a real fs below
    drv = OverlayDriver(root)
    target = ""
    try:
        ids = []
        for i in range(130):
            cache_id = os.urandom(32).hex()
            d = drv.new_layer(cache_id, None)
            with open(os.path.join(d, f"f{i:03d}"), "w") as f:
                f.write(str(i))
            ids.append(cache_id)
        drv.new_rw("ct", list(reversed(ids)))
        spec = drv.rootfs_mount("ct", list(reversed(ids)))
        assert spec is not None
        assert len(":".join(spec.lowers)) > mnt.PAGE_LIMIT  # full paths would not fit in one page
        monkeypatch.setattr(mnt, "_lowerdir_plus", None if lowerdir_plus else False)
        target = drv.rootfs_path("ct")
        try:
            mnt.mount(spec, target)
        except OSError as e:
            if lowerdir_plus:
                pytest.skip(f"kernel without fsconfig lowerdir+: {e}")
            raise
        assert mnt.is_mounted(target)
        assert len([n for n in os.listdir(target) if n.startswith("f")]) == 130
        with open(os.path.join(target, "new"), "w") as f:
            f.write("upper")
        assert os.path.exists(os.path.join(drv.rw_path("ct"), "new"))
    finally:
        if target:
            mnt.unmount(target)
        from berth.fsutil import remove_tree

        remove_tree(root)
    assert not mnt.is_mounted(target)
