"""Download or copy the CIFAR-10 archive, md5-verified, written atomically (the `fetch` stage's library)."""

from __future__ import annotations

import hashlib
import http.client
import os
import re
import ssl
import time
import urllib.error
import urllib.parse
import urllib.request
from collections.abc import Callable
from pathlib import Path
from typing import IO

from tqdm import tqdm

from cifarlab.core.errors import FetchError, one_line
from cifarlab.core.io import atomic_write
from cifarlab.core.paths import RAW_ARCHIVE

CHUNK = 1 << 20
USER_AGENT = "cifarlab-fetch/1"
HINT = (
    "Put a copy of cifar-10-python.tar.gz on disk and point data.url at it: "
    "cifarlab set data.url=/path/to/cifar-10-python.tar.gz && dvc repro"
)


class _Transient(Exception):
    """A failure worth retrying (server error, dropped connection, timeout)."""


class _Permanent(Exception):
    """A failure not worth retrying (404, missing local file, bad checksum)."""


def file_md5(path: str | os.PathLike) -> str:
    """Hex md5 of the file at `path`, read in chunks."""
    h = hashlib.md5()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def _local_source(url: str) -> Path | None:
    """The local path `url` names (a plain path or a file:// URL), or None for a remote URL."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise _Permanent(f"file:// URL with host {parsed.netloc!r} is not supported")
        return Path(urllib.request.url2pathname(parsed.path))
    if parsed.scheme in ("http", "https"):
        return None
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive
        raise _Permanent(f"unsupported URL scheme {parsed.scheme!r} (use http(s)://, file:// or a path)")
    return Path(url).expanduser()


def _copy_stream(src: IO[bytes], dst: IO[bytes], md5: hashlib._Hash, bar: tqdm | None) -> int:
    n = 0
    # read1: whatever has arrived (up to CHUNK), so the progress bar and the temp file move
    # with the network instead of in whole CHUNKs; plain read() where a stream lacks it.
    read = getattr(src, "read1", src.read)
    for chunk in iter(lambda: read(CHUNK), b""):
        dst.write(chunk)
        md5.update(chunk)
        n += len(chunk)
        if bar is not None:
            bar.update(len(chunk))
    return n


def _copy_local(src: Path, dst: IO[bytes]) -> str:
    md5 = hashlib.md5()
    try:
        with open(src, "rb") as f:
            _copy_stream(f, dst, md5, None)
    except FileNotFoundError:
        where = (
            ""
            if src.is_absolute()
            else (
                f" (looked at {src.absolute()}: a relative data.url is read from the project root, and a queued or "
                "--temp experiment's root is a copy under .dvc/tmp/exps; give data.url as an absolute path)"
            )
        )
        raise _Permanent(f"no such file {str(src)!r}{where}") from None
    except IsADirectoryError:
        raise _Permanent(f"{str(src)!r} is a directory, not the archive") from None
    except OSError as e:
        raise _Permanent(one_line(e)) from e
    return md5.hexdigest()


def _download(url: str, dst: IO[bytes], timeout_s: float, progress: bool | None, desc: str) -> str:
    md5 = hashlib.md5()
    req = urllib.request.Request(url, headers={"User-Agent": USER_AGENT})
    try:
        with urllib.request.urlopen(req, timeout=timeout_s) as resp:
            length_header = resp.headers.get("Content-Length")
            total = int(length_header) if length_header and length_header.isdigit() else None
            disable = None if progress is None else not progress
            with tqdm(
                total=total, unit="B", unit_scale=True, unit_divisor=1024, desc=desc, disable=disable, leave=False
            ) as bar:
                got = _copy_stream(resp, dst, md5, bar)
            if total is not None and got != total:
                raise _Transient(f"connection closed after {got} of {total} bytes")
    except urllib.error.HTTPError as e:
        reason = f"HTTP {e.code} {one_line(e.reason)}"
        if e.code >= 500 or e.code in (408, 429):
            raise _Transient(reason) from e
        raise _Permanent(reason) from e
    except urllib.error.URLError as e:
        if isinstance(e.reason, ssl.SSLCertVerificationError):
            raise _Permanent(f"TLS certificate check failed: {one_line(e.reason)}") from e
        raise _Transient(one_line(e.reason)) from e
    except TimeoutError as e:
        raise _Transient(f"timed out ({one_line(e) or 'no data'})") from e
    except (ConnectionError, http.client.HTTPException) as e:
        raise _Transient(f"{type(e).__name__}: {one_line(e)}") from e
    return md5.hexdigest()


def fetch(
    url: str,
    md5: str,
    dest: str | os.PathLike = RAW_ARCHIVE,
    *,
    retries: int = 3,
    backoff_s: float = 1.0,
    progress: bool | None = None,
    timeout_s: float = 60.0,
    sleep: Callable[[float], None] = time.sleep,
) -> Path:
    """Copy or download `url` to `dest`, verifying its md5; return `dest`.

    A local path or file:// URL is copied; an http(s) URL is downloaded, retried up to
    `retries` more times (waiting `backoff_s`, doubling) on transient failures -- HTTP 5xx,
    dropped connections, timeouts -- but not on e.g. 404. Nothing is left at `dest` (or beside it)
    unless the whole file arrived and matched `md5`. If `dest` already holds a file with that
    md5 nothing is done. `progress=None` shows a progress bar only on a terminal.
    Raises `FetchError` (one line naming the URL) on failure.
    """
    dest = Path(dest)
    expected = str(md5).strip().lower()
    if not re.fullmatch(r"[0-9a-f]{32}", expected):
        raise FetchError(f"data.md5 {md5!r} is not an md5 hex digest (32 hex characters)")
    if dest.is_file() and file_md5(dest) == expected:
        return dest
    # A fetch killed mid-download (SIGKILL, power loss) leaves its temp file: never taken for
    # the archive (other name, never renamed into place), but no use either, as a server need
    # not support ranged requests. Clear them: this fetch starts over.
    for stale in dest.parent.glob(f".{dest.name}.*.tmp"):
        stale.unlink(missing_ok=True)

    def fail(reason: str) -> FetchError:
        return FetchError(f"could not fetch {url}: {one_line(reason)}. {HINT}")

    try:
        local = _local_source(url)
    except _Permanent as e:
        raise fail(str(e)) from None

    attempts = 1 if local is not None else max(0, int(retries)) + 1
    for attempt in range(attempts):
        try:
            with atomic_write(dest, "wb") as f:
                if local is not None:
                    got = _copy_local(local, f)
                else:
                    got = _download(url, f, timeout_s, progress, dest.name)
                if got != expected:
                    raise FetchError(
                        f"checksum mismatch for {url}: got {got}, expected {expected} (data.md5); "
                        f"if this copy is the one you mean (e.g. the offline subset), also set data.md5={got}"
                    )
            return dest
        except _Permanent as e:
            raise fail(str(e)) from e
        except _Transient as e:
            if attempt + 1 >= attempts:
                tries = f" after {attempts} attempts" if attempts > 1 else ""
                raise fail(f"{e}{tries}") from e
            sleep(backoff_s * 2**attempt)
    raise AssertionError("unreachable")  # pragma: no cover
