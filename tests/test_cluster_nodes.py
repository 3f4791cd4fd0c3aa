"""``sicc cluster encode --address`` on a simulated two-node Ray cluster (``ray.cluster_utils``,
two raylets of one CPU each on this machine): the workers run on both nodes and the files equal
the batch command's. Its own module, so that the local Ray of ``test_cluster.py`` is shut down
before this cluster starts."""

from __future__ import annotations

import os

import pytest

from tests.clitools import cli_inprocess, cli_subprocess
from tests.clitools import one_torch_thread  # noqa: F401  (autouse)
from tests.test_cluster import CORRUPT, make_album, names, table

pytest.importorskip("ray", reason="Ray is not installed: pip install -e '.[ray]' (CI installs it)")


@pytest.fixture(scope="module")
def two_nodes():
    from ray.cluster_utils import Cluster

    os.environ.setdefault("RAY_DEDUP_LOGS", "0")
    cluster = Cluster(initialize_head=True, connect=False,
                      head_node_args={"num_cpus": 1, "include_dashboard": False})
    try:
        cluster.add_node(num_cpus=1)
        cluster.wait_for_nodes()
        yield cluster
    finally:
        cluster.shutdown()


def test_a_job_runs_on_both_nodes_of_a_cluster(two_nodes, tmp_path, tiny_weights, monkeypatch):
    # Ray Data starts handing out files when the first actor is up; with files of milliseconds it
    # could finish them alone before the second starts: wait for both (Ray Data's own setting)
    monkeypatch.setenv("RAY_DATA_DEFAULT_WAIT_FOR_MIN_ACTORS_S", "240")
    album = make_album(tmp_path / "photos")
    expected = tmp_path / "expected"
    assert cli_inprocess(["encode", album, "-r", "-o", expected, "--levels", "3", "--weights", tiny_weights]).code == 3
    out = tmp_path / "sics"
    result = cli_subprocess(["cluster", "encode", album, "-r", "-o", out, "--levels", "3", "--address",
                             two_nodes.address, "--weights", tiny_weights, "-q"], timeout=300)
    assert result.code == 3, result.stderr
    assert "Traceback" not in result.stderr
    assert names(out) == sorted([*names(expected), "results.parquet"])
    for name in names(expected):
        assert (out / name).read_bytes() == (expected / name).read_bytes(), name
    rows = table(out / "results.parquet")
    assert sorted(row["path"] for row in rows if row["status"] == "failed") == sorted(str(album / n) for n in CORRUPT)
    nodes = {row["node"] for row in rows if row["status"] == "done"}
    assert len(nodes) == 2  # one worker per node: each has one CPU
