"""`cifarlab repro` and the network: what it opens, and what it waits for.

Dask's comms have no authentication: whoever reaches a scheduler's port can run Python on its
workers. So every port of a cluster cifarlab starts on one machine (scheduler, nannies, workers,
their HTTP servers, the dashboard) listens on loopback only; the test reads the listening sockets
from the OS, on the CPU path (LocalCluster) and the GPU path (SpecCluster, its GPU ids faked: they
only set CUDA_VISIBLE_DEVICES). And a --scheduler address that accepts the connection but is no
Dask scheduler (an HTTP server: the dashboard's port) fails in one line in bounded time.
"""

from __future__ import annotations

import http.server
import subprocess
import sys
import threading
import time
from urllib.parse import urlsplit

import psutil
import pytest
from workspace import project_env, small_project

from cifarlab.tooling.scaleout import clusters, coordinator
from cifarlab.tooling.scaleout.placement import ScaleOutError

LOOPBACK = {"127.0.0.1", "::1", "localhost"}


def listening(pids) -> set[tuple[int, str, int]]:
    """(pid, ip, port) of every TCP socket these processes listen on, IPv4 and IPv6, as the OS has them."""
    found = set()
    for pid in pids:
        try:
            proc = psutil.Process(pid)
            # `connections` before psutil 6
            conns = (getattr(proc, "net_connections", None) or proc.connections)(kind="inet")
        except psutil.NoSuchProcess:
            continue
        found |= {(pid, c.laddr.ip, c.laddr.port) for c in conns if c.status == psutil.CONN_LISTEN}
    return found


def process_tree() -> list[int]:
    me = psutil.Process()
    return [me.pid, *(p.pid for p in me.children(recursive=True))]


@pytest.mark.slow  # real Dask clusters
@pytest.mark.parametrize("gpus", [[], ["0", "1"]], ids=["cpu-localcluster", "two-gpus-speccluster"])
def test_a_one_machine_cluster_listens_on_loopback_only(gpus):
    from distributed import Client

    before = listening(process_tree())
    cluster, _ = clusters.local_cluster(2, gpus)
    try:
        with Client(cluster) as client:
            client.wait_for_workers(2, timeout=60)
            workers = client.scheduler_info()["workers"]
            said = [
                cluster.scheduler_address,
                cluster.dashboard_link,
                *workers,
                *(w["nanny"] for w in workers.values() if w.get("nanny")),
            ]
            opened = listening(process_tree()) - before
    finally:
        cluster.close()
    exposed = sorted(s for s in opened if s[1] not in LOOPBACK)
    assert not exposed, f"listening beyond this machine (pid, ip, port): {exposed}"
    assert {urlsplit(a).hostname for a in said} <= LOOPBACK, said
    # what was read is the cluster: the scheduler, its HTTP server (the dashboard, bokeh or not),
    # and each worker's comm and HTTP server
    assert len(opened) >= 2 + 2 * 2, opened
    assert urlsplit(cluster.dashboard_link).port in {port for _, _, port in opened}


class NotDask(http.server.BaseHTTPRequestHandler):
    def do_GET(self):  # http.server's name
        self.send_response(200)
        self.end_headers()
        self.wfile.write(b"not a Dask scheduler\n")

    def log_message(self, *args):  # quiet: the test reads the command's stderr
        pass


@pytest.fixture
def http_address():
    """tcp://127.0.0.1:PORT of a plain HTTP server in a thread (what a dashboard's port answers)."""
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), NotDask)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield f"tcp://127.0.0.1:{server.server_address[1]}"
    finally:
        server.shutdown()
        server.server_close()


@pytest.fixture(scope="module")
def project(tmp_path_factory, tiny_archive):
    """A committed small project, nothing run yet (so `cifarlab repro` has stages to run)."""
    repo = tmp_path_factory.mktemp("security") / "repo"
    small_project(repo, *tiny_archive)
    return repo


@pytest.mark.slow  # a committed small project and a Dask client
def test_a_scheduler_address_that_is_an_http_server_fails_in_one_line(project, http_address):
    bound = 60  # s; the command's own bound is coordinator.HANDSHAKE_S (10 s) past its start (~5 s)
    t0 = time.monotonic()
    try:
        out = subprocess.run(
            [sys.executable, "-m", "cifarlab", "repro", "--scheduler", http_address],
            cwd=project,
            env=project_env(project),
            capture_output=True,
            text=True,
            timeout=bound,
        )
    except subprocess.TimeoutExpired as e:
        pytest.fail(
            f"cifarlab repro --scheduler {http_address} (an HTTP server) still waiting after {bound} s; "
            f"its output: {(e.stdout or b'').decode()!r}"
        )
    seconds = time.monotonic() - t0
    assert out.returncode == 1, out
    assert out.stderr.count("\n") == 1, out.stderr
    assert out.stderr.startswith(f"error: {http_address} answered but is not a Dask scheduler"), out.stderr
    assert "tcp://HOST:8786" in out.stderr, out.stderr
    assert seconds < bound
    assert not (project / "dvc.lock").exists()  # fetch did not run: nothing was done


@pytest.mark.slow  # a real Dask scheduler
def test_a_real_scheduler_is_let_through_and_its_dashboard_port_is_not(monkeypatch):
    """The handshake check passes a Dask scheduler (a worker joins), and refuses the port its
    dashboard's HTTP server answers on, the likely mistake."""
    from distributed import LocalCluster

    monkeypatch.setattr(coordinator, "HANDSHAKE_S", 2)
    with LocalCluster(
        n_workers=1,
        threads_per_worker=1,
        processes=False,
        protocol="tcp://",
        host="127.0.0.1",
        dashboard_address="127.0.0.1:0",
    ) as cluster:
        with coordinator._cluster(True, None, cluster.scheduler_address, None, 1) as (client, gpu):
            assert len(client.scheduler_info()["workers"]) == 1 and gpu is False
        board = f"tcp://127.0.0.1:{urlsplit(cluster.dashboard_link).port}"
        t0 = time.monotonic()
        with pytest.raises(ScaleOutError) as err:
            with coordinator._cluster(True, None, board, None, 1):
                pass
        assert time.monotonic() - t0 < 2 + 5  # s: the handshake bound, and a margin for a busy machine
    assert str(err.value).startswith(f"{board} answered but is not a Dask scheduler"), err.value
