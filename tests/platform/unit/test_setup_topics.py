"""Topics are created with the replication factor and min.insync.replicas of the settings
(issue 8, defect 7: both were fixed at 1 in code)."""

from __future__ import annotations

from contracts.topics import ALL_TOPICS
from services import setup
from services.platform.settings import Settings


class FakeAdmin:
    created: list = []

    def __init__(self, **kwargs) -> None:
        pass

    async def start(self) -> None:
        pass

    async def close(self) -> None:
        pass

    async def list_topics(self) -> list[str]:
        return [ALL_TOPICS[0].name]  # one exists already: left as it is

    async def create_topics(self, topics) -> None:
        FakeAdmin.created = list(topics)


async def test_a_three_broker_cluster_gets_its_replication_and_min_insync_replicas(monkeypatch):
    monkeypatch.setattr(setup, "AIOKafkaAdminClient", FakeAdmin)
    settings = Settings(kafka_replication_factor=3, kafka_min_insync_replicas=2)
    created = await setup.create_topics(settings)
    assert created == [t.name for t in ALL_TOPICS[1:]]
    assert {t.replication_factor for t in FakeAdmin.created} == {3}
    assert {t.topic_configs["min.insync.replicas"] for t in FakeAdmin.created} == {"2"}
    kept_forever = [t for t in FakeAdmin.created if t.name == "shopify-prima.order-events.v1"][0]
    assert kept_forever.topic_configs["retention.ms"] == "-1"


async def test_one_local_broker_is_the_default(monkeypatch):
    monkeypatch.setattr(setup, "AIOKafkaAdminClient", FakeAdmin)
    await setup.create_topics(Settings())
    assert {(t.replication_factor, t.topic_configs["min.insync.replicas"]) for t in FakeAdmin.created} == {(1, "1")}
