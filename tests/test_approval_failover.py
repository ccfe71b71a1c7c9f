"""A committed approval never answers 5xx, and a client that lost the answer gets it again (issue 11:
a check in flight when a Cluster primary died committed its approval and still answered 503)."""

from __future__ import annotations

from collections.abc import Iterator

import pytest
from cluster_fixtures import LocalCluster, local_cluster, running_service_at
from conftest import Clock, RecordingSender, make_settings

from otp.core.phone import parse_e164
from otp.errors import InvalidInput
from otp.storage import keys as keyspace


@pytest.fixture
def own_cluster() -> Iterator[LocalCluster]:
    """A cluster of this test's own: it kills one of its primaries."""
    with local_cluster("otp-test-failover-") as cluster:
        yield cluster


def _number_whose_prefix_lives_apart(cluster: LocalCluster) -> tuple[str, int]:
    """A number whose destination-prefix counters sit on a primary that serves neither its
    verification's partition, nor its country, nor the API keys; and that primary's port."""
    keys_node = cluster.node_for_key(keyspace.api_key("x"))
    for exchange in range(200, 1000):
        try:
            phone = parse_e164(f"+1415{exchange}2671")
        except InvalidInput:
            continue
        partition = keyspace.partition_of_number(phone.e164, 16)
        home = cluster.node_for_key(keyspace.tag(partition))
        prefix_node = cluster.node_for_key(keyspace.scope_window("pfx", phone.prefix))
        country_node = cluster.node_for_key(keyspace.scope_window("cc", phone.country))
        if prefix_node not in (home, keys_node, country_node):
            return phone.e164, prefix_node
    raise AssertionError("no number with its prefix on a node of its own")


async def test_a_right_code_approves_and_repeats_its_token_while_a_counter_node_is_down(
    own_cluster: LocalCluster,
) -> None:
    to, doomed = _number_whose_prefix_lives_apart(own_cluster)
    settings = make_settings(own_cluster.url)
    async with running_service_at(settings, Clock(), RecordingSender()) as service:
        started = await service.start(to)
        assert started.status_code == 201, started.text
        vid = started.json()["id"]
        code = await service.last_code(to)
        # The prefix's primary dies with the check in flight: its conversion counter can't be written.
        own_cluster.processes[own_cluster.ports.index(doomed)].kill()
        checked = await service.check(code, id=vid)
        assert checked.status_code == 200, checked.text
        assert checked.json()["approved"] is True
        token = checked.json()["token"]
        # The client lost that answer and retries: the same approval, the same token.
        retried = await service.check(code, id=vid)
        assert retried.status_code == 200, retried.text
        assert retried.json()["token"] == token
        fetched = await service.http.get(f"/v1/verifications/{vid}", headers=service.auth())
        assert fetched.json()["status"] == "approved"
