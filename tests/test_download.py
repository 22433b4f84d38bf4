"""Download and extraction, against a local HTTP server on 127.0.0.1 (never the internet).

The server (http.server, in a thread) serves archives built here (a mini UCF101 tree), honours
``Range`` requests (206 / 416) unless told not to, can drop the connection after N bytes of its
first response, can fail the first requests with 503, and records every request.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import random
import re
import subprocess
import sys
import tarfile
import threading
import zipfile
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path

import pytest

from lib.data import download_extract as dl
from lib.data.download import Transfer, download_file, download_ucf101, extract_archive
from lib.data.errors import DownloadError
from lib.data.ucf101 import LIST_DIR_NAME, VIDEO_DIR_NAME, load_ucf101, write_split_lists
from lib.data.ucf101_report import summarize
from lib.paths import REPO_ROOT

SPLITS_NAME = "UCF101TrainTestSplits-RecognitionTask.zip"
CLASSES = ["ApplyEyeMakeup", "HandstandPushups", "YoYo"]


# =============================================================================================
# Local HTTP server
# =============================================================================================
@dataclass
class ServerState:
    files: dict[str, bytes] = field(default_factory=dict)  # URL path -> body
    honor_range: bool = True
    drop_after: int | None = None  # on the next GET only: send this many body bytes, then hang up
    fail_next: int = 0  # answer the next N GETs with 503
    requests: list[tuple[str, str | None, int]] = field(default_factory=list)  # (path, Range header, status)
    lock: threading.Lock = field(default_factory=threading.Lock)

    def ranges(self, path: str) -> list[str | None]:
        return [rng for p, rng, _ in self.requests if p == path]


class RangeHandler(BaseHTTPRequestHandler):
    """GET with optional single-range ``bytes=N-`` support (HTTP/1.0: one request per connection)."""

    server: _Server

    def do_GET(self) -> None:  # noqa: N802 (http.server's naming)
        state = self.server.state
        rng = self.headers.get("Range")
        with state.lock:
            body = state.files.get(self.path)
            fail = state.fail_next > 0
            state.fail_next -= int(fail)
            drop, state.drop_after = state.drop_after, None
        if body is None or fail:
            status = 404 if body is None else 503
            state.requests.append((self.path, rng, status))
            self.send_error(status)
            return
        start = 0
        m = re.fullmatch(r"bytes=(\d+)-", rng or "")
        if m and state.honor_range:
            start = int(m[1])
            if start >= len(body):
                state.requests.append((self.path, rng, 416))
                self.send_response(416)
                self.send_header("Content-Range", f"bytes */{len(body)}")
                self.send_header("Content-Length", "0")
                self.end_headers()
                return
            self.send_response(206)
            self.send_header("Content-Range", f"bytes {start}-{len(body) - 1}/{len(body)}")
            status = 206
        else:
            self.send_response(200)
            status = 200
        state.requests.append((self.path, rng, status))
        payload = body[start:]
        self.send_header("Content-Length", str(len(payload)))  # the full length, even when dropping
        self.send_header("Accept-Ranges", "bytes")
        self.end_headers()
        self.wfile.write(payload if drop is None else payload[:drop])
        self.wfile.flush()
        self.close_connection = True

    def log_message(self, format: str, *args: object) -> None:  # noqa: A002 (base class signature)
        pass  # keep pytest output clean


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    state: ServerState


@dataclass
class LocalServer:
    state: ServerState
    base_url: str

    def serve(self, path: str, body: bytes) -> str:
        self.state.files[path] = body
        return self.base_url + path


@pytest.fixture(autouse=True)
def _no_proxies(monkeypatch: pytest.MonkeyPatch) -> None:
    """urllib honours *_proxy variables; the tests talk to 127.0.0.1 directly."""
    for var in ("http_proxy", "https_proxy", "all_proxy", "HTTP_PROXY", "HTTPS_PROXY", "ALL_PROXY"):
        monkeypatch.delenv(var, raising=False)


@pytest.fixture()
def server() -> Iterator[LocalServer]:
    httpd = _Server(("127.0.0.1", 0), RangeHandler)
    httpd.state = ServerState()
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield LocalServer(httpd.state, f"http://127.0.0.1:{httpd.server_address[1]}")
    finally:
        httpd.shutdown()
        httpd.server_close()
        thread.join(timeout=5)


# =============================================================================================
# Archives
# =============================================================================================
def make_mini_tree(root: Path, *, groups: int = 9, clips: int = 2) -> list[str]:
    """UCF-101/ (random-byte stand-in videos) and ucfTrainTestlist/ (official format) under root."""
    rng = random.Random(0)
    relpaths = [f"{cls}/v_{'HandStandPushups' if cls == 'HandstandPushups' else cls}_g{g:02d}_c{c:02d}.avi"
                for cls in CLASSES for g in range(1, groups + 1) for c in range(1, clips + 1)]
    for rel in relpaths:
        path = root / VIDEO_DIR_NAME / rel
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(rng.randbytes(1500))  # incompressible: the archive is ~75 KB
    write_split_lists(root / LIST_DIR_NAME, CLASSES, relpaths)
    return relpaths


def zip_dirs(src_root: Path, names: list[str], *, skip: set[str] = frozenset()) -> bytes:
    buf = io.BytesIO()
    with zipfile.ZipFile(buf, "w", zipfile.ZIP_DEFLATED) as zf:
        for name in names:
            for path in sorted((src_root / name).rglob("*")):
                rel = path.relative_to(src_root).as_posix()
                if rel not in skip:
                    zf.write(path, rel)
    return buf.getvalue()


@dataclass(frozen=True)
class MiniArchives:
    tree: Path
    relpaths: list[str]
    full: bytes  # UCF-101/ and ucfTrainTestlist/
    videos: bytes  # UCF-101/ only
    splits: bytes  # ucfTrainTestlist/ only


@pytest.fixture(scope="module")
def archives(tmp_path_factory: pytest.TempPathFactory) -> MiniArchives:
    tree = tmp_path_factory.mktemp("mini_tree")
    relpaths = make_mini_tree(tree)
    return MiniArchives(tree, relpaths, zip_dirs(tree, [VIDEO_DIR_NAME, LIST_DIR_NAME]),
                        zip_dirs(tree, [VIDEO_DIR_NAME]), zip_dirs(tree, [LIST_DIR_NAME]))


def sha256_of(data: bytes) -> str:
    return hashlib.sha256(data).hexdigest()


def leftovers(folder: Path) -> list[str]:
    return sorted(p.name for p in folder.iterdir() if p.name.startswith(".extract-"))


# =============================================================================================
# download_file
# =============================================================================================
def test_full_download_verify_and_extract(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    dest = tmp_path / "dl" / "mini.zip"
    got = download_file(url, dest, sha256=sha256_of(archives.full), md5=hashlib.md5(archives.full).hexdigest(),
                        expected_size=len(archives.full), transfer=Transfer(progress=False))
    assert got == dest and dest.read_bytes() == archives.full
    assert not (tmp_path / "dl" / "mini.zip.part").exists()
    assert (tmp_path / "dl" / "mini.zip.sha256").read_text() == f"{sha256_of(archives.full)}  mini.zip\n"
    assert server.state.ranges("/mini.zip") == [None]

    out = tmp_path / "data"
    placed = extract_archive(dest, out)
    assert sorted(p.name for p in placed) == [VIDEO_DIR_NAME, LIST_DIR_NAME]
    assert leftovers(out) == []
    split = load_ucf101(out, 1)
    assert len(split.train) + len(split.val) + len(split.test) == len(archives.relpaths)
    assert split.test[0].path.read_bytes() == (archives.tree / VIDEO_DIR_NAME / split.test[0].relpath).read_bytes()

    # A re-run finds the verified file and its sidecar: no request at all.
    download_file(url, dest, sha256=sha256_of(archives.full), transfer=Transfer(progress=False))
    assert len(server.state.requests) == 1


def test_interrupted_download_resumes_with_range(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    server.state.drop_after = 20_000
    dest = tmp_path / "mini.zip"
    download_file(url, dest, sha256=sha256_of(archives.full),
                  transfer=Transfer(retries=2, backoff_s=0, chunk_size=4096, progress=False))
    assert dest.read_bytes() == archives.full
    assert server.state.requests == [("/mini.zip", None, 200), ("/mini.zip", "bytes=20000-", 206)]


def test_download_resumes_across_runs(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    server.state.drop_after = 30_000
    dest = tmp_path / "mini.zip"
    with pytest.raises(DownloadError, match=r"failed after 1 attempt.*30000 of"):
        download_file(url, dest, transfer=Transfer(retries=0, progress=False))
    part = tmp_path / "mini.zip.part"
    assert not dest.exists() and part.read_bytes() == archives.full[:30_000]
    # A new run (fresh hashes): the kept prefix is hashed from disk, the rest fetched with Range.
    download_file(url, dest, sha256=sha256_of(archives.full), transfer=Transfer(retries=0, progress=False))
    assert dest.read_bytes() == archives.full and not part.exists()
    assert server.state.ranges("/mini.zip") == [None, "bytes=30000-"]


def test_checksum_mismatch_leaves_no_file(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    dest = tmp_path / "mini.zip"
    with pytest.raises(DownloadError) as exc:
        download_file(url, dest, sha256="0" * 64, transfer=Transfer(progress=False))
    msg = str(exc.value)
    assert exc.value.path == dest and "mini.zip" in msg
    assert f"sha256 {sha256_of(archives.full)}, expected {'0' * 64}" in msg
    assert sorted(os.listdir(tmp_path)) == []  # no final file, no .part, no sidecar

    with pytest.raises(DownloadError, match="md5 .*expected 00000"):
        download_file(url, dest, md5="0" * 32, transfer=Transfer(progress=False))
    assert not dest.exists()


def test_size_mismatch_is_refused_before_downloading(
    server: LocalServer, archives: MiniArchives, tmp_path: Path
) -> None:
    url = server.serve("/mini.zip", archives.full)
    with pytest.raises(DownloadError, match=f"server announces {len(archives.full)} bytes, expected 123"):
        download_file(url, tmp_path / "mini.zip", expected_size=123, transfer=Transfer(progress=False))
    assert not (tmp_path / "mini.zip").exists()


def test_server_ignoring_range_restarts_cleanly(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    server.state.honor_range = False
    dest = tmp_path / "mini.zip"
    (tmp_path / "mini.zip.part").write_bytes(b"stale bytes from elsewhere" * 100)
    download_file(url, dest, sha256=sha256_of(archives.full), transfer=Transfer(retries=0, progress=False))
    assert dest.read_bytes() == archives.full  # not stale prefix + full body
    assert server.state.requests == [("/mini.zip", "bytes=2600-", 200)]


def test_complete_part_file_is_finished_via_416(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    dest = tmp_path / "mini.zip"
    (tmp_path / "mini.zip.part").write_bytes(archives.full)  # e.g. killed between download and rename
    download_file(url, dest, sha256=sha256_of(archives.full), transfer=Transfer(retries=0, progress=False))
    assert dest.read_bytes() == archives.full
    assert server.state.requests == [("/mini.zip", f"bytes={len(archives.full)}-", 416)]


def test_existing_file_without_sidecar_is_verified(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    url = server.serve("/mini.zip", archives.full)
    dest = tmp_path / "mini.zip"
    dest.write_bytes(archives.full[:1000])  # a hand-copied, truncated archive
    download_file(url, dest, sha256=sha256_of(archives.full), transfer=Transfer(retries=0, progress=False))
    assert dest.read_bytes() == archives.full
    assert server.state.ranges("/mini.zip") == ["bytes=1000-"]


def test_transient_errors_are_retried_others_are_not(
    server: LocalServer, archives: MiniArchives, tmp_path: Path
) -> None:
    url = server.serve("/mini.zip", archives.full)
    server.state.fail_next = 2
    download_file(url, tmp_path / "mini.zip", transfer=Transfer(retries=2, backoff_s=0, progress=False))
    assert [status for *_, status in server.state.requests] == [503, 503, 200]

    with pytest.raises(DownloadError, match=r"HTTP 404 .*not retried"):
        download_file(server.base_url + "/absent.zip", tmp_path / "absent.zip",
                      transfer=Transfer(retries=3, backoff_s=0, progress=False))
    assert server.state.ranges("/absent.zip") == [None]


# =============================================================================================
# extract_archive
# =============================================================================================
@pytest.mark.parametrize("evil", ["../evil.txt", "UCF-101/../../evil.txt", "/tmp/evil_abs.txt", "C:/evil.txt"])
def test_zip_path_traversal_is_refused(tmp_path: Path, evil: str) -> None:
    archive = tmp_path / "evil.zip"
    with zipfile.ZipFile(archive, "w") as zf:
        zf.writestr("UCF-101/A/v_A_g01_c01.avi", b"ok")
        zf.writestr(evil, b"pwned")
    out = tmp_path / "a" / "b"
    with pytest.raises(DownloadError, match=rf"refusing member {re.escape(repr(evil))}.*path traversal"):
        extract_archive(archive, out)
    assert os.listdir(out) == []  # nothing extracted, temp folder gone
    assert not (tmp_path / "a" / "evil.txt").exists() and not (tmp_path / "evil.txt").exists()


def test_tar_extraction_and_its_data_filter(tmp_path: Path) -> None:
    good = tmp_path / "good.tar.gz"
    with tarfile.open(good, "w:gz") as tf:
        info = tarfile.TarInfo("ucfTrainTestlist/classInd.txt")
        info.size = 10
        tf.addfile(info, io.BytesIO(b"1 YoYo\r\n\r\n"))
    extract_archive(good, tmp_path / "out")
    assert (tmp_path / "out" / LIST_DIR_NAME / "classInd.txt").read_bytes() == b"1 YoYo\r\n\r\n"

    evil = tmp_path / "evil.tar"
    with tarfile.open(evil, "w") as tf:
        info = tarfile.TarInfo("../evil.txt")
        info.size = 1
        tf.addfile(info, io.BytesIO(b"x"))
    with pytest.raises(DownloadError, match="cannot extract tar"):
        extract_archive(evil, tmp_path / "out2")
    assert not (tmp_path / "evil.txt").exists() and os.listdir(tmp_path / "out2") == []


def test_rar_without_any_tool_says_what_to_install(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(dl.shutil, "which", lambda name: None)
    archive = tmp_path / "UCF101.rar"
    archive.write_bytes(b"Rar!\x1a\x07\x00 not really")
    with pytest.raises(DownloadError) as exc:
        extract_archive(archive, tmp_path / "out")
    msg = str(exc.value)
    assert "no RAR extractor found on PATH (tried unrar, 7z, bsdtar, unar)" in msg
    for hint in ("apt-get install unrar", "apt-get install unar", "libarchive-tools", "p7zip-full"):
        assert hint in msg
    assert os.listdir(tmp_path / "out") == []


def _fake_tool(folder: Path, name: str, body: str) -> Path:
    """An executable Python script standing in for an external extractor."""
    path = folder / name
    path.write_text(f"#!{sys.executable}\nimport sys, zipfile\nargs = sys.argv[1:]\n{body}\n")
    path.chmod(0o755)
    return path


def test_rar_uses_the_first_working_tool(
    tmp_path: Path, archives: MiniArchives, monkeypatch: pytest.MonkeyPatch
) -> None:
    # unrar exists but fails; 7z is absent; bsdtar (-xf ARCHIVE -C OUT) works. Our ".rar" is a zip.
    bin_dir = tmp_path / "bin"
    bin_dir.mkdir()
    tools = {
        "unrar": _fake_tool(bin_dir, "unrar", "sys.stderr.write('unrar: unsupported format'); sys.exit(3)"),
        "bsdtar": _fake_tool(bin_dir, "bsdtar", "assert args[0] == '-xf' and args[2] == '-C'\n"
                                                "zipfile.ZipFile(args[1]).extractall(args[3])"),
    }
    monkeypatch.setattr(dl.shutil, "which", lambda name: str(tools[name]) if name in tools else None)
    archive = tmp_path / "UCF101.rar"
    archive.write_bytes(archives.videos)
    placed = extract_archive(archive, tmp_path / "out", expect=VIDEO_DIR_NAME)
    assert placed == [tmp_path / "out" / VIDEO_DIR_NAME]
    assert sorted(p.name for p in (tmp_path / "out" / VIDEO_DIR_NAME).iterdir()) == sorted(CLASSES)

    tools["bsdtar"] = _fake_tool(bin_dir, "bsdtar", "sys.exit(1)")
    with pytest.raises(DownloadError,
                       match=r"RAR extraction failed: unrar exited 3: unrar: unsupported format \| bsdtar exited 1"):
        extract_archive(archive, tmp_path / "out3")


def test_interrupted_extraction_never_looks_complete(tmp_path: Path, archives: MiniArchives,
                                                     monkeypatch: pytest.MonkeyPatch) -> None:
    archive = tmp_path / "mini.zip"
    archive.write_bytes(archives.full)
    out = tmp_path / "out"
    real_extractall = zipfile.ZipFile.extractall

    def crash_half_way(self: zipfile.ZipFile, path: str | os.PathLike[str], *args: object, **kwargs: object) -> None:
        self.extract(self.namelist()[0], path)
        raise KeyboardInterrupt  # e.g. Ctrl-C in the middle

    monkeypatch.setattr(zipfile.ZipFile, "extractall", crash_half_way)
    with pytest.raises(KeyboardInterrupt):
        extract_archive(archive, out)
    assert os.listdir(out) == []  # no UCF-101/, no temp folder

    (out / ".extract-mini.zip-stale").mkdir()  # as a SIGKILL would leave it
    monkeypatch.setattr(zipfile.ZipFile, "extractall", real_extractall)
    extract_archive(archive, out)
    assert sorted(os.listdir(out)) == [VIDEO_DIR_NAME, LIST_DIR_NAME]


def test_extract_replaces_an_existing_target(tmp_path: Path, archives: MiniArchives) -> None:
    archive = tmp_path / "splits.zip"
    archive.write_bytes(archives.splits)
    (tmp_path / "out" / LIST_DIR_NAME).mkdir(parents=True)
    (tmp_path / "out" / LIST_DIR_NAME / "old.txt").touch()
    extract_archive(archive, tmp_path / "out", expect=LIST_DIR_NAME)
    assert not (tmp_path / "out" / LIST_DIR_NAME / "old.txt").exists()
    assert (tmp_path / "out" / LIST_DIR_NAME / "classInd.txt").is_file()
    with pytest.raises(DownloadError, match="archive holds no UCF-101/ folder"):
        extract_archive(archive, tmp_path / "out2", expect=VIDEO_DIR_NAME)


# =============================================================================================
# download_ucf101
# =============================================================================================
def test_download_ucf101_end_to_end(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    splits_url = server.serve("/" + SPLITS_NAME, archives.splits)
    videos_url = server.serve("/UCF101-videos.zip", archives.videos)
    server.state.drop_after = 5_000  # the first transfer breaks once and resumes
    root = tmp_path / "ucf101"
    transfer = Transfer(backoff_s=0, progress=False)
    assert download_ucf101(root, videos_url=videos_url, splits_url=splits_url, transfer=transfer) == root
    assert sorted(os.listdir(root)) == sorted([VIDEO_DIR_NAME, LIST_DIR_NAME, f".{SPLITS_NAME}.extracted",
                                               ".UCF101-videos.zip.extracted"])  # archives deleted
    marker = json.loads((root / ".UCF101-videos.zip.extracted").read_text())
    assert marker["entries"] == [VIDEO_DIR_NAME] and marker["sha256"] == sha256_of(archives.videos)
    summary = summarize(root, 1)
    assert summary["missing"] == 0 and summary["ok"]
    assert summary["train"] + summary["val"] + summary["test"] == len(archives.relpaths)

    n_requests = len(server.state.requests)
    # all done: no requests
    download_ucf101(root, videos_url=videos_url, splits_url=splits_url, transfer=Transfer(progress=False))
    assert len(server.state.requests) == n_requests


def test_download_ucf101_splits_only_keeping_archives(
    server: LocalServer, archives: MiniArchives, tmp_path: Path
) -> None:
    splits_url = server.serve("/" + SPLITS_NAME, archives.splits)
    root = tmp_path / "ucf101"
    download_ucf101(root, splits_only=True, keep_archives=True, splits_url=splits_url,
                    videos_url=server.base_url + "/never.rar", transfer=Transfer(progress=False))
    assert (root / LIST_DIR_NAME / "trainlist03.txt").is_file() and not (root / VIDEO_DIR_NAME).exists()
    assert (root / "archives" / SPLITS_NAME).read_bytes() == archives.splits
    assert (root / "archives" / f"{SPLITS_NAME}.sha256").is_file()
    assert server.state.ranges("/never.rar") == []


def test_download_ucf101_rejects_an_incomplete_tree(
    server: LocalServer, archives: MiniArchives, tmp_path: Path
) -> None:
    lost = f"{VIDEO_DIR_NAME}/{archives.relpaths[3]}"
    splits_url = server.serve("/" + SPLITS_NAME, archives.splits)
    videos_url = server.serve("/videos.zip", zip_dirs(archives.tree, [VIDEO_DIR_NAME], skip={lost}))
    expected = rf"incomplete: fold 1 lists 1 video\(s\) not on disk, e\.g\. {re.escape(archives.relpaths[3])}"
    with pytest.raises(DownloadError, match=expected):
        download_ucf101(tmp_path / "ucf101", videos_url=videos_url, splits_url=splits_url,
                        transfer=Transfer(progress=False))


def test_download_ucf101_checks_the_rar_tool_before_downloading(
    server: LocalServer, archives: MiniArchives, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setattr(dl.shutil, "which", lambda name: None)
    splits_url = server.serve("/" + SPLITS_NAME, archives.splits)
    videos_url = server.serve("/UCF101.rar", b"Rar!\x1a\x07\x00" + b"x" * 1000)
    with pytest.raises(DownloadError, match="no RAR extractor found"):
        download_ucf101(tmp_path / "ucf101", videos_url=videos_url, splits_url=splits_url,
                        transfer=Transfer(progress=False))
    assert server.state.ranges("/UCF101.rar") == []  # the 6.5 GB download was not started


def test_download_ucf101_leaves_a_foreign_tree_alone(
    server: LocalServer, archives: MiniArchives, tmp_path: Path
) -> None:
    splits_url = server.serve("/" + SPLITS_NAME, archives.splits)
    root = tmp_path / "ucf101"
    (root / LIST_DIR_NAME).mkdir(parents=True)  # e.g. the synthetic dataset's lists
    with pytest.raises(DownloadError, match="already exists but was not extracted"):
        download_ucf101(root, splits_only=True, splits_url=splits_url, transfer=Transfer(progress=False))
    download_ucf101(root, splits_only=True, splits_url=splits_url, force=True, transfer=Transfer(progress=False))
    assert (root / LIST_DIR_NAME / "classInd.txt").is_file()


def test_cli_download_splits_only(server: LocalServer, archives: MiniArchives, tmp_path: Path) -> None:
    splits_url = server.serve("/" + SPLITS_NAME, archives.splits)
    root = tmp_path / "ucf101"
    env = {k: v for k, v in os.environ.items() if "proxy" not in k.lower()}
    proc = subprocess.run(
        [sys.executable, "-m", "lib.data", "download", "--root", str(root), "--splits-only",
         "--splits-url", splits_url, "--no-progress"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 0, proc.stderr
    assert f"ready and validated at {root}" in proc.stdout
    assert (root / LIST_DIR_NAME / "classInd.txt").read_bytes().startswith(b"1 ApplyEyeMakeup\r\n")

    proc = subprocess.run(
        [sys.executable, "-m", "lib.data", "download", "--root", str(tmp_path / "x"), "--splits-only",
         "--splits-url", server.base_url + "/nope.zip", "--no-progress", "--retries", "0"],
        cwd=REPO_ROOT, capture_output=True, text=True, timeout=120, env=env)
    assert proc.returncode == 2 and "error: " in proc.stderr and "HTTP 404" in proc.stderr
