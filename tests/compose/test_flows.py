"""Both flows through the compose stack's published ports, as a user of `docker compose up` drives
them: signed Shopify webhooks to the ingest, Prima stock changes through the Prima sandbox; the
results read from the Prima sandbox (sales orders), the Shopify sandbox (inventory levels) and the
ops API. Then a crashed container and a killed one: compose's restart policy brings the first back,
the second stays down until started again, and no order is lost or sent twice either way."""

from __future__ import annotations

import asyncio
import os
import signal

from tests.compose.api import SKUS, Api, desired, new_skus
from tests.compose.stack import ComposeStack, run


async def test_paid_orders_become_exactly_one_sales_order_each(api: Api):
    await api.wait_for_items(SKUS)
    bodies = await api.paid_orders(10)
    # Shopify delivers the same change again now and then: a repeat changes nothing
    assert (await api.delivered("orders/paid", next(iter(bodies.values())))).status_code == 200
    await api.one_sales_order_each(bodies)


async def test_prima_stock_changes_reach_the_shopify_sandbox_less_the_buffer(api: Api):
    skus = new_skus("TEE", "CAP", "MUG")
    await api.sold_in_shopify(dict(zip(skus, (10, 7, 5))))

    changed = dict(zip(skus, (4, 1, 30)))
    await api.prima_stock(changed)
    await api.wait_levels({sku: desired(sku, n) for sku, n in changed.items()})


async def test_a_crashed_container_is_restarted_by_compose_and_loses_nothing(api: Api, compose: ComposeStack):
    """The order decider's process dies (SIGKILL from the host, as the OOM killer or a crash
    does: not through Docker's API) while orders arrive. The restart policy (unless-stopped)
    starts it again; every order still becomes exactly one sales order."""
    before = compose.wait_healthy("order-decider")
    bodies = await api.paid_orders(5)
    os.kill(before["State"]["Pid"], signal.SIGKILL)
    bodies |= await api.paid_orders(5)

    after = compose.wait_healthy("order-decider", restarts=before["RestartCount"] + 1)
    assert after["State"]["StartedAt"] != before["State"]["StartedAt"]
    assert after["Id"] == before["Id"], "the same container, restarted by the engine"
    await api.one_sales_order_each(bodies)


async def test_a_killed_container_stays_down_until_started_and_its_work_waits(api: Api, compose: ComposeStack):
    """`docker kill` is an operator's stop: Docker cancels the container's restart policy for it
    (moby's killWithSignal marks it manually stopped), so compose does not bring it back by itself.
    The Prima gateway is killed; orders arriving meanwhile are decided and their commands wait in
    Kafka; `docker compose up -d` starts it again and each order becomes exactly one sales order."""
    before = compose.wait_healthy("prima-gateway")
    run(["docker", "kill", compose.container("prima-gateway")])
    bodies = await api.paid_orders(5)
    for order_id in bodies:  # the order decider asked for the sales order; nobody sent it
        await api.wait_for_state(order_id, {"sent"})
    await asyncio.sleep(3)
    stopped = compose.inspect("prima-gateway")
    assert not stopped["State"]["Running"] and stopped["RestartCount"] == before["RestartCount"], stopped["State"]
    for order_id in bodies:
        assert await api.sales_orders(order_id) == []

    compose.compose("up", "-d", "--no-build", "--wait", "prima-gateway")
    await api.one_sales_order_each(bodies)
