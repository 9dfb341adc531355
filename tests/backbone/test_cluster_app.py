"""The API on a Redis Cluster (GASDISPATCH_REDIS_CLUSTER_NODES): the same code as on one Redis puts a
technician on the map, finds him near a customer under the rate limit, and pushes to his socket."""

import json
from datetime import UTC, datetime

import httpx
import websockets
from redis.asyncio import RedisCluster

from kit.fanout import account_channel, message
from tests.backbone.resilience_support import recv_until
from tests.factories import make_customer, make_technician

CENTER = (120.155, 30.274)


async def test_an_api_on_a_redis_cluster_serves_the_map_the_throttle_and_the_sockets(
    api_process, cluster_ports: list[int], committed_sessions,
) -> None:
    cluster = RedisCluster(host="127.0.0.1", port=cluster_ports[0], decode_responses=True)
    await cluster.flushall(target_nodes=RedisCluster.PRIMARIES)
    async with committed_sessions() as session:
        customer = await make_customer(session, *CENTER)
        technician = await make_technician(session)
        await session.commit()
    base = api_process(GASDISPATCH_REDIS_CLUSTER_NODES=",".join(f"127.0.0.1:{p}" for p in cluster_ports),
                       GASDISPATCH_REDIS_URL="redis://127.0.0.1:1/0")  # unreachable: only the cluster serves
    try:
        async with httpx.AsyncClient(base_url=base, timeout=30) as http, \
                websockets.connect(base.replace("http://", "ws://") + "/v1/ws/technician",
                                   additional_headers=technician.headers) as tech_ws:
            assert (await http.post("/v1/technicians/me/online", headers=technician.headers)).status_code == 200
            fix = await http.post("/v1/technicians/me/location", headers=technician.headers,
                                  json={"position": {"type": "Point", "coordinates": [CENTER[0] + 0.002, CENTER[1]]},
                                        "ts": datetime.now(UTC).isoformat()})
            assert fix.status_code == 202, fix.text
            near = await http.get("/v1/technicians/nearby", headers=customer.headers,
                                  params={"address_id": str(customer.address.id)})
            assert near.status_code == 200, near.text
            assert [t["id"] for t in near.json()["data"]] == [str(technician.technician.id)]
            # The geo index lives in the cluster, under the city's hash tag.
            assert [k async for k in cluster.scan_iter(match="matching:{*")]

            # A push published through the cluster reaches the socket held by the API's node connection.
            await tech_ws.send(json.dumps({"v": 1, "type": "ping", "id": "joined"}))
            await recv_until(tech_ws, lambda m: m.get("id") == "joined")
            await cluster.publish(account_channel(technician.account.id), message("notification", notification={"kind": "cluster_check"}))
            pushed = await recv_until(tech_ws, lambda m: m.get("type") == "notification")
            assert pushed["notification"]["kind"] == "cluster_check"

            # The nearby throttle counts in the cluster too: it refuses after its limit.
            codes = [(await http.get("/v1/technicians/nearby", headers=customer.headers,
                                     params={"address_id": str(customer.address.id)})).status_code
                     for _ in range(40)]
            assert 429 in codes
            assert [k async for k in cluster.scan_iter(match="ratelimit*")]
    finally:
        await cluster.aclose()
