"""Stand-in until berth.build.context lands (buildfront's branch): reads only the Dockerfile
out of the context tar, extracting nothing, so builds without COPY/ADD work meanwhile."""

from __future__ import annotations

import tarfile

MAX_DOCKERFILE = 4 << 20


class ContextError(Exception):
    pass


class BuildContext:
    def __init__(self, tar_path: str) -> None:
        self.tar_path = tar_path
        self.root = ""

    @classmethod
    def from_tar(cls, tar_path: str, workdir: str) -> BuildContext:
        try:
            with tarfile.open(tar_path, "r:*"):
                pass
        except (tarfile.TarError, EOFError) as e:
            raise ContextError(f"failed to read the build context: not a tar archive ({e})") from None
        return cls(tar_path)

    def dockerfile(self, name: str) -> str:
        want = name.lstrip("./") or "Dockerfile"
        with tarfile.open(self.tar_path, "r:*") as tf:
            for m in tf:
                if m.name.lstrip("./") == want and m.isfile():
                    if m.size > MAX_DOCKERFILE:
                        raise ContextError("the Dockerfile is too large")
                    f = tf.extractfile(m)
                    assert f is not None
                    return f.read().decode("utf-8", "replace")
        raise ContextError(f"Cannot locate specified Dockerfile: {name}")

    def apply_dockerignore(self) -> None:
        pass

    def close(self) -> None:
        pass
