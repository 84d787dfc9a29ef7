"""The fetch stage: local copies, file:// URLs, HTTP downloads (a local server only), checksums."""

from __future__ import annotations

import hashlib
import http.server
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Iterator
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import pytest
from helpers_bad_inputs import MALFORMED_MD5S
from workspace import SHIPPED_PARAMS

from cifarlab.core.errors import DataError, FetchError
from cifarlab.data.download import fetch, file_md5

SRC = Path(__file__).resolve().parents[1] / "src"


def _files(d: Path) -> list[str]:
    """Everything under `d` (temp files included), as relative names."""
    return sorted(str(p.relative_to(d)) for p in d.rglob("*") if p.is_file()) if d.exists() else []


def _assert_one_line(e: pytest.ExceptionInfo[BaseException]) -> str:
    msg = str(e.value)
    assert "\n" not in msg and msg.strip() == msg and msg
    return msg


# ------------------------------------------------------------------------------------------
# local copies
# ------------------------------------------------------------------------------------------
def test_copies_local_path(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    src, md5 = tiny_archive
    dest = tmp_path / "raw" / "cifar-10-python.tar.gz"
    assert fetch(str(src), md5, dest) == dest
    assert dest.read_bytes() == src.read_bytes()
    assert _files(tmp_path / "raw") == ["cifar-10-python.tar.gz"]


def test_copies_relative_path(tiny_archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    src, md5 = tiny_archive
    monkeypatch.chdir(src.parent)
    dest = tmp_path / "out.tar.gz"
    fetch(src.name, md5, dest)
    assert file_md5(dest) == md5


def test_copies_file_url(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    src, md5 = tiny_archive
    dest = tmp_path / "out.tar.gz"
    fetch(src.as_uri(), md5.upper(), dest)  # the md5 is case-insensitive
    assert file_md5(dest) == md5


def test_checksum_mismatch_leaves_nothing(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    src, md5 = tiny_archive
    wrong = "0" * 32
    dest = tmp_path / "raw" / "a.tar.gz"
    with pytest.raises(FetchError) as e:
        fetch(str(src), wrong, dest)
    msg = _assert_one_line(e)
    assert msg.startswith(f"checksum mismatch for {src}: got {md5}, expected {wrong} (data.md5)")
    assert _files(tmp_path) == []


def test_missing_local_file_names_url_and_hint(tmp_path: Path) -> None:
    url = str(tmp_path / "nope" / "cifar-10-python.tar.gz")
    with pytest.raises(FetchError) as e:
        fetch(url, "c58f30108f718f92721af3b95e74349a", tmp_path / "raw" / "x.tar.gz")
    msg = _assert_one_line(e)
    assert msg.startswith(f"could not fetch {url}: ")
    assert "data.url=" in msg and "no such file" in msg
    assert isinstance(e.value, DataError)
    assert _files(tmp_path) == []


def test_directory_as_source_fails(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="is a directory"):
        fetch(str(tmp_path), "0" * 32, tmp_path / "raw" / "x.tar.gz")


def test_existing_verified_dest_is_kept(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    src, md5 = tiny_archive
    dest = tmp_path / "x.tar.gz"
    dest.write_bytes(src.read_bytes())
    before = dest.stat().st_mtime_ns
    # the source does not exist: a cache hit must not touch it
    assert fetch(str(tmp_path / "missing.tar.gz"), md5, dest) == dest
    assert dest.stat().st_mtime_ns == before


def test_existing_wrong_dest_is_replaced(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    src, md5 = tiny_archive
    dest = tmp_path / "x.tar.gz"
    dest.write_bytes(b"stale")
    fetch(str(src), md5, dest)
    assert file_md5(dest) == md5
    assert _files(tmp_path) == ["x.tar.gz"]


@pytest.mark.parametrize("bad", MALFORMED_MD5S)
def test_malformed_md5_is_refused(bad: str, tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    with pytest.raises(FetchError, match="data.md5") as e:
        fetch(str(tiny_archive[0]), bad, tmp_path / "x.tar.gz")
    _assert_one_line(e)
    assert _files(tmp_path) == []


def test_unsupported_scheme(tmp_path: Path) -> None:
    with pytest.raises(FetchError, match=r"could not fetch ftp://example\.invalid/a: unsupported URL scheme 'ftp'"):
        fetch("ftp://example.invalid/a", "0" * 32, tmp_path / "x.tar.gz")


# ------------------------------------------------------------------------------------------
# HTTP, against a local server on 127.0.0.1
# ------------------------------------------------------------------------------------------
class _Handler(http.server.BaseHTTPRequestHandler):
    state: dict[str, Any]  # set on the subclass made by the fixture

    def log_message(self, format: str, *args: Any) -> None:  # keep pytest output quiet
        pass

    def _body(self, payload: bytes, length: bool = True) -> None:
        self.send_response(200)
        self.send_header("Content-Type", "application/gzip")
        if length:
            self.send_header("Content-Length", str(len(payload)))
        else:
            self.send_header("Connection", "close")
        self.end_headers()
        self.wfile.write(payload)

    def do_GET(self) -> None:  # http.server's name for it
        st = self.state
        st["hits"][self.path] = st["hits"].get(self.path, 0) + 1
        n = st["hits"][self.path]
        payload: bytes = st["payload"]
        if self.path == "/ok":
            self._body(payload)
        elif self.path == "/nolength":
            self.close_connection = True
            self._body(payload, length=False)
        elif self.path == "/flaky" and n <= 2:
            self.send_error(503, "Service Unavailable")
        elif self.path == "/flaky":
            self._body(payload)
        elif self.path == "/always503":
            self.send_error(503, "Service Unavailable")
        elif self.path == "/die":  # promise the whole body, send half, hang up
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            self.close_connection = True
        elif self.path == "/stall":  # half the body, then nothing until the test is over
            self.send_response(200)
            self.send_header("Content-Length", str(len(payload)))
            self.end_headers()
            self.wfile.write(payload[: len(payload) // 2])
            self.wfile.flush()
            st["release"].wait(60)
            self.close_connection = True
        else:
            self.send_error(404, "Not Found")


@pytest.fixture(scope="module")
def server(tiny_archive: tuple[Path, str]) -> Iterator[SimpleNamespace]:
    path, md5 = tiny_archive
    state: dict[str, Any] = {"payload": path.read_bytes(), "hits": {}, "release": threading.Event()}
    handler = type("Handler", (_Handler,), {"state": state})
    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    httpd.daemon_threads = True
    thread = threading.Thread(target=httpd.serve_forever, kwargs={"poll_interval": 0.05}, daemon=True)
    thread.start()
    try:
        yield SimpleNamespace(base=f"http://127.0.0.1:{httpd.server_address[1]}", md5=md5, state=state)
    finally:
        state["release"].set()
        httpd.shutdown()
        httpd.server_close()


@pytest.fixture
def hits(server: SimpleNamespace) -> dict[str, int]:
    server.state["hits"].clear()
    return server.state["hits"]


def test_http_download(
    server: SimpleNamespace, hits: dict[str, int], tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dest = tmp_path / "raw" / "x.tar.gz"
    assert fetch(f"{server.base}/ok", server.md5, dest, progress=True) == dest
    assert file_md5(dest) == server.md5
    assert _files(tmp_path / "raw") == ["x.tar.gz"]
    assert hits == {"/ok": 1}
    capsys.readouterr()


def test_http_without_content_length(server: SimpleNamespace, hits: dict[str, int], tmp_path: Path) -> None:
    dest = tmp_path / "x.tar.gz"
    fetch(f"{server.base}/nolength", server.md5, dest, progress=False)
    assert file_md5(dest) == server.md5


def test_http_retries_503_then_succeeds(server: SimpleNamespace, hits: dict[str, int], tmp_path: Path) -> None:
    sleeps: list[float] = []
    dest = tmp_path / "x.tar.gz"
    fetch(f"{server.base}/flaky", server.md5, dest, retries=3, backoff_s=0.5, sleep=sleeps.append)
    assert file_md5(dest) == server.md5
    assert hits == {"/flaky": 3}
    assert sleeps == [0.5, 1.0]  # exponential backoff
    assert _files(tmp_path) == ["x.tar.gz"]


def test_http_gives_up_after_retries(server: SimpleNamespace, hits: dict[str, int], tmp_path: Path) -> None:
    url = f"{server.base}/always503"
    with pytest.raises(FetchError) as e:
        fetch(url, server.md5, tmp_path / "x.tar.gz", retries=2, backoff_s=0)
    msg = _assert_one_line(e)
    assert msg.startswith(f"could not fetch {url}: HTTP 503") and "after 3 attempts" in msg and "data.url=" in msg
    assert hits == {"/always503": 3}
    assert _files(tmp_path) == []


def test_http_404_is_not_retried(server: SimpleNamespace, hits: dict[str, int], tmp_path: Path) -> None:
    url = f"{server.base}/missing.tar.gz"
    with pytest.raises(FetchError) as e:
        fetch(url, server.md5, tmp_path / "x.tar.gz", retries=3, backoff_s=0)
    msg = _assert_one_line(e)
    assert msg.startswith(f"could not fetch {url}: HTTP 404") and "data.url=" in msg
    assert hits == {"/missing.tar.gz": 1}
    assert _files(tmp_path) == []


def test_http_dies_mid_body_leaves_nothing(server: SimpleNamespace, hits: dict[str, int], tmp_path: Path) -> None:
    url = f"{server.base}/die"
    dest = tmp_path / "raw" / "x.tar.gz"
    with pytest.raises(FetchError) as e:
        fetch(url, server.md5, dest, retries=1, backoff_s=0)
    msg = _assert_one_line(e)
    assert msg.startswith(f"could not fetch {url}: ") and "connection closed after" in msg
    assert hits == {"/die": 2}
    assert _files(tmp_path) == []


def test_http_checksum_mismatch_is_not_retried(server: SimpleNamespace, hits: dict[str, int], tmp_path: Path) -> None:
    url = f"{server.base}/ok"
    with pytest.raises(FetchError, match=r"^checksum mismatch for http://127\.0\.0\.1:\d+/ok: got "):
        fetch(url, "f" * 32, tmp_path / "x.tar.gz", retries=3, backoff_s=0)
    assert hits == {"/ok": 1}
    assert _files(tmp_path) == []


def test_connection_refused_is_retried_then_reported(tmp_path: Path) -> None:
    with socket.socket() as s:  # a port nothing listens on
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/cifar-10-python.tar.gz"
    sleeps: list[float] = []
    with pytest.raises(FetchError) as e:
        fetch(url, "0" * 32, tmp_path / "x.tar.gz", retries=2, backoff_s=0.25, sleep=sleeps.append, timeout_s=5)
    msg = _assert_one_line(e)
    assert msg.startswith(f"could not fetch {url}: ") and "data.url=" in msg
    assert sleeps == [0.25, 0.5]
    assert _files(tmp_path) == []


# ------------------------------------------------------------------------------------------
# the stage entry point, and the notice dvc.yaml runs before it
# ------------------------------------------------------------------------------------------
def _stage_params(tmp_path: Path, url: str, md5: str) -> None:
    """The shipped params.yaml with data.url / data.md5 replaced, written to tmp_path."""
    import yaml

    d = yaml.safe_load((SHIPPED_PARAMS).read_text())
    d["data"].update(url=url, md5=md5)
    (tmp_path / "params.yaml").write_text(yaml.safe_dump(d))


def test_main_fetches_to_raw_archive(
    tiny_archive: tuple[Path, str], tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    from cifarlab import fetch as fetch_mod
    from cifarlab.core.paths import RAW_ARCHIVE

    src, md5 = tiny_archive
    _stage_params(tmp_path, str(src), md5)
    calls: list[dict[str, Any]] = []
    real_load = fetch_mod.load_params

    def load_params(*a: Any, **k: Any) -> Any:  # the real one, its arguments recorded
        calls.append(k)
        return real_load(*a, **k)

    monkeypatch.setattr(fetch_mod, "load_params", load_params)
    monkeypatch.chdir(tmp_path)
    fetch_mod.main([])
    assert calls == [{"check_models": False}]  # fetch validates without the model registry (torch)
    assert hashlib.md5((tmp_path / RAW_ARCHIVE).read_bytes()).hexdigest() == md5
    assert sorted(_files(tmp_path)) == sorted(["params.yaml", str(RAW_ARCHIVE)])
    out = capsys.readouterr()
    assert out.out.strip() == f"fetch: {RAW_ARCHIVE} (md5 {md5})" and out.err == ""


def test_dvc_runs_the_notice_before_fetch_and_the_notice_never_fails_it(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, capsys: pytest.CaptureFixture[str]
) -> None:
    import yaml

    from cifarlab.tooling import notice

    cmd = yaml.safe_load((Path(__file__).resolve().parents[1] / "dvc.yaml").read_text())["stages"]["fetch"]["cmd"]
    assert cmd == ["python -m cifarlab.tooling.notice", "python -m cifarlab.fetch"]
    _stage_params(tmp_path, str(tmp_path / "nope.tar.gz"), "0" * 32)
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(notice, "repro_notice", lambda p: f"warning: no GPU found: (test notice for {p.data.md5})")
    notice.main()
    assert capsys.readouterr().err.strip() == f"warning: no GPU found: (test notice for {'0' * 32})"

    def broken(p: Any) -> None:
        raise OSError("dvc status failed\nsecond line")

    monkeypatch.setattr(notice, "repro_notice", broken)
    notice.main()  # advice only: one line, no exception, so fetch still runs
    assert (
        capsys.readouterr().err.strip()
        == "note: no time estimate for this dvc repro (OSError: dvc status failed second line)"
    )
    (tmp_path / "params.yaml").write_text("seed: [")
    notice.main()  # bad params: left to fetch's one-line error
    assert capsys.readouterr().err == ""
    assert _files(tmp_path) == ["params.yaml"]


def test_main_validates_params_without_importing_torch(tiny_archive: tuple[Path, str], tmp_path: Path) -> None:
    """`python -m cifarlab.fetch` end to end: the archive, and no torch."""
    src, md5 = tiny_archive
    _stage_params(tmp_path, src.as_uri(), md5)
    code = (
        "import sys\nfrom cifarlab import fetch\nfetch.main([])\n"
        "assert 'torch' not in sys.modules, 'fetch imported torch'"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=tmp_path,
        env={**os.environ, "PYTHONPATH": str(SRC)},
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    from cifarlab.core.paths import RAW_ARCHIVE

    assert r.returncode == 0, r.stderr
    assert file_md5(tmp_path / RAW_ARCHIVE) == md5


def test_download_killed_midway_leaves_no_archive_and_the_next_run_starts_over(
    server: SimpleNamespace, hits: dict[str, int], tmp_path: Path
) -> None:
    """SIGKILL mid-body: no file at the destination (only a temp one), and the next fetch
    clears that temp file and downloads the whole archive again."""
    dest = tmp_path / "raw" / "cifar-10-python.tar.gz"
    code = (
        f"from cifarlab.data.download import fetch; fetch({server.base + '/stall'!r}, {server.md5!r}, "
        f"{str(dest)!r}, progress=False)"
    )
    proc = subprocess.Popen([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(SRC)})
    deadline = time.monotonic() + 60
    while not [p for p in dest.parent.glob("*.tmp") if p.stat().st_size > 0]:
        assert proc.poll() is None and time.monotonic() < deadline, "the download never started"
        time.sleep(0.02)
    proc.send_signal(signal.SIGKILL)
    proc.wait(30)
    assert not dest.exists()
    (stale,) = dest.parent.glob("*.tmp")
    assert stale.name.startswith(".cifar-10-python.tar.gz.")

    fetch(server.base + "/ok", server.md5, dest, progress=False)
    assert file_md5(dest) == server.md5
    assert _files(dest.parent) == ["cifar-10-python.tar.gz"]  # the stale temp file is gone


def test_a_missing_relative_path_names_the_path_it_looked_at(tmp_path: Path, monkeypatch) -> None:
    """A relative data.url resolves against the stage's directory, which for a queued or --temp
    DVC experiment is a copy under .dvc/tmp/exps: the line names the absolute path looked at."""
    run_dir = tmp_path / ".dvc" / "tmp" / "exps" / "run" / "abc"
    run_dir.mkdir(parents=True)
    monkeypatch.chdir(run_dir)
    with pytest.raises(FetchError) as e:
        fetch("../x.tar.gz", "c58f30108f718f92721af3b95e74349a", tmp_path / "raw" / "x.tar.gz")
    msg = _assert_one_line(e)
    assert f"no such file '../x.tar.gz' (looked at {run_dir / '..' / 'x.tar.gz'}" in msg
    assert "give data.url as an absolute path" in msg
