"""COPY/ADD source planning and the build context, on real files in temporary directories.

Each plan is applied to a real target rootfs with berth's own safe tar extractor, and the test
looks at the files that result, as a RUN step after the COPY would. The rules checked are the
Dockerfile reference's ("COPY", "ADD", ".dockerignore") and dockerd's classic builder's wording.
"""

from __future__ import annotations

import bz2
import gzip
import io
import lzma
import os
import stat
import tarfile
import threading
import time

import pytest

from berth.build.context import BuildContext, ContextError
from berth.build.copysrc import CopyError, CopyPlan, StatCache, go_match, has_wildcards, plan_copy
from berth.layers.tarapply import apply_tar

OLD = time.time() - 3600  # mtimes older than the stat cache's racy window


def write(root, rel, data=b"x", mode=0o644, mtime=OLD):
    path = os.path.join(root, rel)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "wb") as f:
        f.write(data)
    os.chmod(path, mode)
    os.utime(path, (mtime, mtime))
    return path


@pytest.fixture
def dirs(tmp_path):
    ctx = tmp_path / "ctx"
    rootfs = tmp_path / "rootfs"
    work = tmp_path / "work"
    for d in (ctx, rootfs, work, rootfs / "etc", rootfs / "app"):
        d.mkdir()
    (rootfs / "etc" / "passwd").write_text("root:x:0:0:root:/root:/bin/sh\napp:x:1000:1001::/home/app:/bin/sh\n")
    (rootfs / "etc" / "group").write_text("root:x:0:\napp:x:1001:\nstaff:x:50:\n")
    return str(ctx), str(rootfs), str(work)


def plan(ctx, rootfs, sources, dest, *, workdir="/", chown=None, chmod=None, add=False, **kw) -> CopyPlan:
    return plan_copy(ctx, sources, dest, workdir=workdir, rootfs=rootfs, chown=chown, chmod=chmod, add=add, **kw)


def apply(p: CopyPlan, rootfs: str, work: str) -> None:
    tar = os.path.join(work, "plan.tar")
    with open(tar, "wb") as f:
        p.write_tar(f)
    apply_tar(tar, rootfs, "plain")
    p.close()


def names(p: CopyPlan) -> list[str]:
    return ["/" + e.name for e in p.entries]


# --- destination rules (ref: COPY "If <dest> ends with a trailing slash ...") ---------------------

def test_file_to_new_path_is_the_path(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "a.txt", b"hello")
    p = plan(ctx, rootfs, ["a.txt"], "/opt/b.txt")
    assert names(p) == ["/opt", "/opt/b.txt"]   # the missing parent is created
    apply(p, rootfs, work)
    assert open(os.path.join(rootfs, "opt/b.txt"), "rb").read() == b"hello"
    st = os.stat(os.path.join(rootfs, "opt"))
    assert stat.S_IMODE(st.st_mode) == 0o755 and (st.st_uid, st.st_gid) == (0, 0)


def test_file_into_trailing_slash_or_existing_directory(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "a.txt")
    assert names(plan(ctx, rootfs, ["a.txt"], "/new/")) == ["/new", "/new/a.txt"]
    assert names(plan(ctx, rootfs, ["a.txt"], "/app")) == ["/app/a.txt"]   # /app exists as a directory


def test_relative_destination_is_under_workdir(dirs):
    ctx, rootfs, _ = dirs
    write(ctx, "a.txt")
    assert names(plan(ctx, rootfs, ["a.txt"], "sub/", workdir="/app")) == ["/app/sub", "/app/sub/a.txt"]
    assert names(plan(ctx, rootfs, ["a.txt"], ".", workdir="/app")) == ["/app/a.txt"]


def test_directory_source_copies_its_contents(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "src/one", b"1")
    write(ctx, "src/sub/two", b"2")
    p = plan(ctx, rootfs, ["src"], "/dst")
    assert names(p) == ["/dst", "/dst/one", "/dst/sub", "/dst/sub/two"]
    apply(p, rootfs, work)
    assert sorted(os.listdir(os.path.join(rootfs, "dst"))) == ["one", "sub"]


def test_several_sources_need_a_directory_destination(dirs):
    ctx, rootfs, _ = dirs
    write(ctx, "a")
    write(ctx, "b")
    with pytest.raises(CopyError) as info:
        plan(ctx, rootfs, ["a", "b"], "/dst")
    assert str(info.value) == ("When using COPY with more than one source file, the destination "
                               "must be a directory and end with a /")
    with pytest.raises(CopyError, match="When using ADD with more than one source file"):
        plan(ctx, rootfs, ["a", "b"], "/dst", add=True)
    assert names(plan(ctx, rootfs, ["a", "b"], "/dst/")) == ["/dst", "/dst/a", "/dst/b"]


def test_wildcards_are_go_filepath_match(dirs):
    ctx, rootfs, _ = dirs
    for n in ("a.txt", "b.txt", "c.md", "sub/d.txt", "[x].txt"):
        write(ctx, n)
    assert names(plan(ctx, rootfs, ["*.txt"], "/d/")) == ["/d", "/d/[x].txt", "/d/a.txt", "/d/b.txt"]
    assert names(plan(ctx, rootfs, ["sub/*.txt"], "/d/")) == ["/d", "/d/d.txt"]
    assert names(plan(ctx, rootfs, ["?.md"], "/d/")) == ["/d", "/d/c.md"]
    # one match: the destination may be a file name
    assert names(plan(ctx, rootfs, ["c.*"], "/x.md")) == ["/x.md"]
    with pytest.raises(CopyError, match="When using COPY with more than one source file"):
        plan(ctx, rootfs, ["*.txt"], "/d")
    with pytest.raises(CopyError, match="no source files were specified"):
        plan(ctx, rootfs, ["*.none"], "/d/")


def test_go_match_rules():
    assert go_match("*.go", "a.go") and not go_match("*.go", "x/a.go")
    assert go_match("[a-c]?", "bz") and not go_match("[^a-c]?", "bz")
    assert go_match("a\\*", "a*") and not go_match("a\\*", "ab")
    assert not go_match("[abc", "a")                      # malformed: no match, as Docker ignores it
    assert has_wildcards("a*") and not has_wildcards("a\\*b") and has_wildcards("[x]")


# --- not found, escapes, symlinks (ref: "The <src> path must be inside the build context") --------

def test_missing_source_wording(dirs):
    ctx, rootfs, _ = dirs
    with pytest.raises(CopyError) as info:
        plan(ctx, rootfs, ["missing.txt"], "/")
    assert str(info.value) == ("COPY failed: file not found in build context or excluded by "
                               ".dockerignore: stat missing.txt: file does not exist")
    with pytest.raises(CopyError) as info:
        plan(ctx, rootfs, ["/missing.txt"], "/", from_stage=True)
    assert str(info.value) == "COPY failed: stat missing.txt: file does not exist"


@pytest.mark.parametrize("src", ["../x", "a/../../x", "/../x", ".."])
def test_parent_paths_never_escape(dirs, src):
    ctx, rootfs, _ = dirs
    with pytest.raises(CopyError, match="forbidden path outside the build context"):
        plan(ctx, rootfs, [src], "/")


def test_absolute_symlink_source_resolves_inside_the_context(dirs, tmp_path):
    ctx, rootfs, work = dirs
    secret = tmp_path / "secret"
    secret.write_text("host secret")
    os.symlink(str(secret), os.path.join(ctx, "link"))           # absolute, pointing at the host
    write(ctx, str(secret).lstrip("/"), b"context copy")          # the same path inside the context
    p = plan(ctx, rootfs, ["link"], "/got")
    apply(p, rootfs, work)
    assert open(os.path.join(rootfs, "got"), "rb").read() == b"context copy"


def test_symlink_source_pointing_out_is_not_found(dirs, tmp_path):
    ctx, rootfs, _ = dirs
    (tmp_path / "outside").write_text("no")
    os.symlink("../outside", os.path.join(ctx, "rel"))
    os.symlink("/etc/hostname", os.path.join(ctx, "abs"))
    for src in ("rel", "abs"):
        with pytest.raises(CopyError, match="file not found in build context"):
            plan(ctx, rootfs, [src], "/x")


def test_symlinks_inside_a_directory_stay_symlinks(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "d/file", b"f")
    os.symlink("/etc/shadow", os.path.join(ctx, "d/abs"))
    os.symlink("file", os.path.join(ctx, "d/rel"))
    p = plan(ctx, rootfs, ["d"], "/out")
    kinds = {e.name: (e.kind, e.linkname) for e in p.entries}
    assert kinds["out/abs"] == ("symlink", "/etc/shadow")
    assert kinds["out/rel"] == ("symlink", "file")
    apply(p, rootfs, work)
    assert os.readlink(os.path.join(rootfs, "out/abs")) == "/etc/shadow"


def test_top_level_symlink_source_is_followed_and_keeps_its_name(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "real.txt", b"real")
    os.symlink("real.txt", os.path.join(ctx, "alias.txt"))
    p = plan(ctx, rootfs, ["alias.txt"], "/d/")
    assert [(e.name, e.kind) for e in p.entries] == [("d", "dir"), ("d/alias.txt", "file")]


def test_symlink_loop_is_an_error_not_a_hang(dirs):
    ctx, rootfs, _ = dirs
    os.symlink("b", os.path.join(ctx, "a"))
    os.symlink("a", os.path.join(ctx, "b"))
    with pytest.raises(CopyError, match="COPY failed: stat a"):
        plan(ctx, rootfs, ["a"], "/x")
    # inside a copied directory a loop is just two symlinks
    os.mkdir(os.path.join(ctx, "d"))
    os.symlink("y", os.path.join(ctx, "d/x"))
    os.symlink("x", os.path.join(ctx, "d/y"))
    assert [e.kind for e in plan(ctx, rootfs, ["d"], "/d2").entries] == ["dir", "symlink", "symlink"]


def test_fifo_in_the_context_is_copied_as_a_fifo_without_blocking(dirs):
    ctx, rootfs, work = dirs
    os.mkdir(os.path.join(ctx, "d"))
    os.mkfifo(os.path.join(ctx, "d/pipe"))
    write(ctx, "d/file", b"ok")
    result: list[CopyPlan] = []
    t = threading.Thread(target=lambda: result.append(plan(ctx, rootfs, ["d"], "/d")), daemon=True)
    t.start()
    t.join(10)
    assert result, "planning blocked on a FIFO"
    assert {e.name: e.kind for e in result[0].entries}["d/pipe"] == "fifo"
    apply(result[0], rootfs, work)
    assert stat.S_ISFIFO(os.lstat(os.path.join(rootfs, "d/pipe")).st_mode)


def test_destination_symlink_in_the_rootfs_resolves_inside_it(dirs, tmp_path):
    ctx, rootfs, work = dirs
    write(ctx, "f", b"data")
    os.symlink(str(tmp_path / "hostdir"), os.path.join(rootfs, "escape"))   # absolute: means rootfs/…
    (tmp_path / "hostdir").mkdir()
    p = plan(ctx, rootfs, ["f"], "/escape/f")
    apply(p, rootfs, work)
    assert os.listdir(tmp_path / "hostdir") == []


# --- ownership and mode (ref: COPY --chown, --chmod) ---------------------------------------------

def test_default_owner_is_root_and_mode_is_kept(dirs):
    ctx, rootfs, _ = dirs
    write(ctx, "run.sh", mode=0o750)
    (e,) = plan(ctx, rootfs, ["run.sh"], "/run.sh").entries
    assert (e.uid, e.gid, e.mode) == (0, 0, 0o750)


@pytest.mark.parametrize("chown,ids", [
    ("1000", (1000, 1000)),          # a user alone means the same name or number for the group
    ("app", (1000, 1001)),
    ("app:staff", (1000, 50)),
    ("5:6", (5, 6)),
    ("app:50", (1000, 50)),
])
def test_chown_names_resolve_in_the_target_rootfs(dirs, chown, ids):
    ctx, rootfs, _ = dirs
    write(ctx, "d/f")
    p = plan(ctx, rootfs, ["d"], "/new/dir", chown=chown)
    owners = {e.name: (e.uid, e.gid) for e in p.entries}
    assert owners["new/dir/f"] == ids and owners["new/dir"] == ids
    assert owners["new"] == (0, 0)   # parents of a directory copy stay root's


def test_chown_errors(dirs):
    ctx, rootfs, _ = dirs
    write(ctx, "f")
    with pytest.raises(CopyError) as info:
        plan(ctx, rootfs, ["f"], "/f", chown="nobody")
    assert str(info.value) == ("unable to convert uid/gid chown string to host mapping: "
                               "can't find uid for user nobody: no such user: nobody")
    with pytest.raises(CopyError, match="can't find gid for group nogroup: no such group: nogroup"):
        plan(ctx, rootfs, ["f"], "/f", chown="app:nogroup")
    with pytest.raises(CopyError, match="invalid chown string format: a:b:c"):
        plan(ctx, rootfs, ["f"], "/f", chown="a:b:c")


def test_chown_reads_the_rootfs_passwd_through_symlinks_inside_it(dirs):
    ctx, rootfs, _ = dirs
    write(ctx, "f")
    os.unlink(os.path.join(rootfs, "etc/passwd"))
    write(rootfs, "srv/passwd", b"root:x:77:77::/:/bin/sh\n")
    os.symlink("/srv/passwd", os.path.join(rootfs, "etc/passwd"))   # absolute: inside the rootfs
    (e,) = plan(ctx, rootfs, ["f"], "/f", chown="root:0").entries
    assert (e.uid, e.gid) == (77, 0)
    os.unlink(os.path.join(rootfs, "etc/passwd"))
    os.symlink("/etc/passwd", os.path.join(rootfs, "etc/passwd"))   # a loop, never the host's file
    with pytest.raises(CopyError) as info:
        plan(ctx, rootfs, ["f"], "/f", chown="root")
    assert str(info.value) == ("unable to convert uid/gid chown string to host mapping: can't find uid "
                               "for user root: open /etc/passwd: too many levels of symbolic links")
    os.unlink(os.path.join(rootfs, "etc/passwd"))
    with pytest.raises(CopyError, match="open /etc/passwd: no such file or directory"):
        plan(ctx, rootfs, ["f"], "/f", chown="root")


def test_chmod_applies_to_everything_copied(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "d/f", mode=0o600)
    p = plan(ctx, rootfs, ["d"], "/d", chmod="0755")
    assert {e.name: e.mode for e in p.entries} == {"d": 0o755, "d/f": 0o755}
    with pytest.raises(CopyError, match="invalid chmod parameter: 99"):
        plan(ctx, rootfs, ["d"], "/d", chmod="99")


def test_copy_from_a_stage_keeps_ownership_without_chown(dirs):
    ctx, rootfs, _ = dirs
    write(ctx, "f")
    os.chown(os.path.join(ctx, "f"), 123, 456)
    assert [(e.uid, e.gid) for e in plan(ctx, rootfs, ["f"], "/f", from_stage=True).entries] == [(123, 456)]
    assert [(e.uid, e.gid) for e in plan(ctx, rootfs, ["f"], "/f").entries] == [(0, 0)]


# --- ADD archives (ref: ADD "If <src> is a local tar archive ... it is unpacked as a directory") --

def _tar_bytes(files: dict[str, bytes], compress=None) -> bytes:
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as tf:
        for name, data in files.items():
            ti = tarfile.TarInfo(name)
            ti.size, ti.mode, ti.uid, ti.gid, ti.mtime = len(data), 0o640, 7, 8, 1_600_000_000
            tf.addfile(ti, io.BytesIO(data))
    raw = bio.getvalue()
    return compress(raw) if compress else raw


@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress, lzma.compress])
def test_add_unpacks_local_archives(dirs, compress):
    ctx, rootfs, work = dirs
    with open(os.path.join(ctx, "pkg.tar.any"), "wb") as f:
        f.write(_tar_bytes({"top/a.txt": b"A", "b.txt": b"B"}, compress))
    p = plan(ctx, rootfs, ["pkg.tar.any"], "/opt/pkg", add=True, tmpdir=work)
    apply(p, rootfs, work)
    assert open(os.path.join(rootfs, "opt/pkg/top/a.txt"), "rb").read() == b"A"
    st = os.stat(os.path.join(rootfs, "opt/pkg/b.txt"))
    assert (stat.S_IMODE(st.st_mode), st.st_uid, st.st_gid) == (0o640, 7, 8)   # the archive's metadata


def test_copy_never_unpacks_and_add_keeps_non_archives(dirs):
    ctx, rootfs, _ = dirs
    with open(os.path.join(ctx, "pkg.tgz"), "wb") as f:
        f.write(_tar_bytes({"a": b"A"}, gzip.compress))
    write(ctx, "notes.gz", gzip.compress(b"just text, not a tar" * 40))
    assert names(plan(ctx, rootfs, ["pkg.tgz"], "/d/")) == ["/d", "/d/pkg.tgz"]
    assert names(plan(ctx, rootfs, ["notes.gz"], "/d/", add=True)) == ["/d", "/d/notes.gz"]
    assert names(plan(ctx, rootfs, ["pkg.tgz"], "/d/", add=True, extract=False)) == ["/d", "/d/pkg.tgz"]


def test_add_archive_with_escaping_entries_is_refused(dirs):
    ctx, rootfs, _ = dirs
    with open(os.path.join(ctx, "evil.tar"), "wb") as f:
        f.write(_tar_bytes({"../../etc/evil": b"x"}))
    with pytest.raises(CopyError, match="path escapes the destination"):
        plan(ctx, rootfs, ["evil.tar"], "/d", add=True)


def test_add_url_is_not_planned_here_and_copy_refuses_urls(dirs):
    ctx, rootfs, _ = dirs
    with pytest.raises(CopyError, match="source can't be a URL for COPY"):
        plan(ctx, rootfs, ["http://example.invalid/x"], "/x")


def test_inline_heredoc_files(dirs):
    ctx, rootfs, work = dirs
    p = plan(ctx, rootfs, [], "/etc/app/", inline=[("conf", b"k=v\n")])
    assert [(e.name, e.mode) for e in p.entries] == [("etc/app", 0o755), ("etc/app/conf", 0o644)]
    apply(p, rootfs, work)
    assert open(os.path.join(rootfs, "etc/app/conf"), "rb").read() == b"k=v\n"


# --- the checksum: what busts the cache and what does not ----------------------------------------

def test_checksum_follows_content_mode_owner_and_file_set_not_atime(dirs):
    ctx, rootfs, _ = dirs
    f = write(ctx, "d/f", b"one")
    base = plan(ctx, rootfs, ["d"], "/d").checksum
    assert plan(ctx, rootfs, ["d"], "/d").checksum == base                   # deterministic
    os.utime(f, (time.time(), OLD))                                          # atime only
    assert plan(ctx, rootfs, ["d"], "/d").checksum == base
    os.utime(f, (OLD, OLD + 10))                                             # mtime only (tarsum v1)
    assert plan(ctx, rootfs, ["d"], "/d").checksum == base
    assert plan(ctx, rootfs, ["d"], "/d", chown="1000").checksum != base      # owner
    assert plan(ctx, rootfs, ["d"], "/elsewhere").checksum != base           # destination
    os.chmod(f, 0o600)
    mode_changed = plan(ctx, rootfs, ["d"], "/d").checksum
    assert mode_changed != base
    write(ctx, "d/f", b"two", mode=0o600)
    content_changed = plan(ctx, rootfs, ["d"], "/d").checksum
    assert content_changed not in (base, mode_changed)
    write(ctx, "d/g", b"new file")
    assert plan(ctx, rootfs, ["d"], "/d").checksum != content_changed        # file set


def test_stat_cache_skips_rehashing_and_sees_changes(dirs, tmp_path):
    ctx, rootfs, _ = dirs
    for i in range(20):
        write(ctx, f"d/f{i}", b"%d" % i)
    cache_file = str(tmp_path / "statcache.json")
    c1 = StatCache(cache_file)
    first = plan(ctx, rootfs, ["d"], "/d", stat_cache=c1).checksum
    assert (c1.hits, c1.misses) == (0, 20)
    c2 = StatCache(cache_file)                                               # persisted
    assert plan(ctx, rootfs, ["d"], "/d", stat_cache=c2).checksum == first
    assert (c2.hits, c2.misses) == (20, 0)
    write(ctx, "d/f3", b"changed")                                           # new content, new mtime
    c3 = StatCache(cache_file)
    changed = plan(ctx, rootfs, ["d"], "/d", stat_cache=c3).checksum
    assert changed != first and c3.misses == 1
    assert changed == plan(ctx, rootfs, ["d"], "/d").checksum                # same as without a cache


def test_stat_cache_does_not_remember_racy_files(dirs, tmp_path):
    ctx, rootfs, _ = dirs
    write(ctx, "fresh", b"a", mtime=time.time())
    c = StatCache(str(tmp_path / "c.json"))
    plan(ctx, rootfs, ["fresh"], "/x", stat_cache=c)
    assert c.entries == {}


def test_write_tar_refuses_a_file_changed_after_planning(dirs):
    ctx, rootfs, work = dirs
    write(ctx, "f", b"aaaa")
    p = plan(ctx, rootfs, ["f"], "/f")
    with open(os.path.join(ctx, "f"), "wb") as f:
        f.write(b"bbbb")
    with pytest.raises(CopyError, match="changed during the build"), open(os.path.join(work, "t.tar"), "wb") as out:
        p.write_tar(out)


def test_tar_is_sorted_and_parents_come_first(dirs):
    ctx, rootfs, work = dirs
    for n in ("z", "a/b/c", "a.b", "m/n"):
        write(ctx, "src/" + n)
    p = plan(ctx, rootfs, ["src"], "/deep/dst")
    buf = io.BytesIO()
    p.write_tar(buf)
    buf.seek(0)
    got = [m.name.rstrip("/") for m in tarfile.open(fileobj=buf)]
    assert got == sorted(got, key=os.fsencode)
    assert got.index("deep") < got.index("deep/dst") < got.index("deep/dst/a") < got.index("deep/dst/a/b/c")


# --- the build context ---------------------------------------------------------------------------

def _context_tar(work, files, compress=None):
    path = os.path.join(work, "ctx.tar")
    with open(path, "wb") as f:
        f.write(_tar_bytes(files, compress))
    return path


@pytest.mark.parametrize("compress", [None, gzip.compress, bz2.compress, lzma.compress])
def test_context_from_tar_every_format(dirs, compress):
    _, _, work = dirs
    with BuildContext.from_tar(_context_tar(work, {"Dockerfile": b"FROM busybox\n", "a": b"A"}, compress), work) as c:
        assert c.dockerfile() == "FROM busybox\n"
        assert sorted(os.listdir(c.root)) == ["Dockerfile", "a"]
    assert os.listdir(work) == ["ctx.tar"]   # nothing left behind


def test_context_dockerfile_lookup(dirs):
    _, _, work = dirs
    with BuildContext.from_tar(_context_tar(work, {"dockerfile": b"FROM a\n", "sub/Dockerfile.dev": b"FROM b\n"}),
                               work) as c:
        assert c.dockerfile() == "FROM a\n"                     # lower-case fallback for the default name
        assert c.dockerfile("sub/Dockerfile.dev") == "FROM b\n"
        with pytest.raises(ContextError) as info:
            c.dockerfile("Dockerfile.missing")
        assert str(info.value) == "Cannot locate specified Dockerfile: Dockerfile.missing"
        with pytest.raises(ContextError, match="forbidden path outside the build context"):
            c.dockerfile("../etc/passwd")


def test_context_dockerfile_symlink_stays_inside(dirs):
    _, _, work = dirs
    bio = io.BytesIO()
    with tarfile.open(fileobj=bio, mode="w") as tf:
        ti = tarfile.TarInfo("Dockerfile")
        ti.type, ti.linkname = tarfile.SYMTYPE, "/etc/hostname"
        tf.addfile(ti)
    path = os.path.join(work, "ctx.tar")
    with open(path, "wb") as f:
        f.write(bio.getvalue())
    with BuildContext.from_tar(path, work) as c, pytest.raises(ContextError, match="Cannot locate"):
        c.dockerfile()


@pytest.mark.parametrize("body,message", [
    (b"this is not a tar" * 100, "archive/tar: invalid tar header"),
    (b"short", "unexpected EOF"),
])
def test_context_that_is_not_a_tar(dirs, body, message):
    _, _, work = dirs
    path = os.path.join(work, "body")
    with open(path, "wb") as f:
        f.write(body)
    with pytest.raises(ContextError) as info:
        BuildContext.from_tar(path, work)
    assert str(info.value) == message
    assert os.listdir(work) == ["body"]


def test_empty_body_is_an_empty_context(dirs):
    _, _, work = dirs
    path = os.path.join(work, "body")
    open(path, "wb").close()
    with BuildContext.from_tar(path, work) as c:
        assert os.listdir(c.root) == []
        with pytest.raises(ContextError, match="Cannot locate specified Dockerfile: Dockerfile"):
            c.dockerfile()
    with BuildContext.empty(work) as c:
        assert os.listdir(c.root) == []


def test_context_tar_with_escaping_entry_is_refused(dirs):
    _, _, work = dirs
    with pytest.raises(ContextError, match="escapes"):
        BuildContext.from_tar(_context_tar(work, {"../evil": b"x"}), work)
    assert os.listdir(work) == ["ctx.tar"]


def test_apply_dockerignore(dirs):
    _, _, work = dirs
    files = {"Dockerfile": b"FROM a\n", ".dockerignore": b"*.log\nnode_modules\n!node_modules/keep\nsecret/\n",
             "app.log": b"", "src/app.log": b"", "node_modules/x/y": b"", "node_modules/keep": b"",
             "secret/key": b"", "src/main.c": b""}
    with BuildContext.from_tar(_context_tar(work, files), work) as c:
        c.dockerfile()
        c.apply_dockerignore()
        left = sorted(os.path.relpath(os.path.join(d, f), c.root) for d, _, fs in os.walk(c.root) for f in fs)
        assert left == [".dockerignore", "Dockerfile", "node_modules/keep", "src/app.log", "src/main.c"]


def test_dockerignore_can_exclude_the_dockerfile_after_it_is_read(dirs):
    _, _, work = dirs
    files = {"Dockerfile": b"FROM a\n", ".dockerignore": b"Dockerfile\n.dockerignore\n", "a": b""}
    with BuildContext.from_tar(_context_tar(work, files), work) as c:
        assert c.dockerfile() == "FROM a\n"
        c.apply_dockerignore()
        assert os.listdir(c.root) == ["a"]


def test_context_tar_ending_right_after_the_last_entry_is_accepted(dirs):
    # the docker CLI's `-f -` context: no padding after the last file, no end-of-archive blocks;
    # Go's tar reader (dockerd) reads it as a complete archive
    _, _, work = dirs
    raw = _tar_bytes({"data.txt": b"d", "Dockerfile": b"FROM busybox\nLABEL from=stdin\n"})
    cut = raw.rstrip(b"\0")
    for body in (cut, gzip.compress(cut)):
        path = os.path.join(work, "ctx.tar")
        with open(path, "wb") as f:
            f.write(body)
        with BuildContext.from_tar(path, work) as c:
            assert c.dockerfile() == "FROM busybox\nLABEL from=stdin\n"
            assert open(os.path.join(c.root, "data.txt"), "rb").read() == b"d"
    path = os.path.join(work, "ctx.tar")
    with open(path, "wb") as f:
        f.write(cut[:-5])                              # data itself cut short: refused
    with pytest.raises(ContextError, match="unexpected EOF"):
        BuildContext.from_tar(path, work)
    assert os.listdir(work) == ["ctx.tar"]
