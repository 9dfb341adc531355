"""The floor under the realtime figure: a bare `websockets` server (no authentication, no
database, no protocol checks) whose sockets each follow one Redis channel through one shared
pattern subscription per process. The bench PUBLISHes a stamped `probe` frame to a socket's
channel and reads it off that socket. Every frame a client sends is answered with an ack, so
the sockets carry the same position traffic as in the application's run.

    python -m bench.realtime_support.baseline --port P --redis-url URL --prefix PREFIX

A socket connects to ws://127.0.0.1:P/<channel>, where the channel starts with PREFIX.
"""

import argparse
import asyncio
import json
import signal

from redis.asyncio import Redis
from websockets.asyncio.server import ServerConnection, serve
from websockets.exceptions import ConnectionClosed

sockets: dict[str, ServerConnection] = {}


async def follow(connection: ServerConnection) -> None:
    channel = connection.request.path.lstrip("/")
    sockets[channel] = connection
    try:
        async for raw in connection:
            message = json.loads(raw)
            await connection.send(json.dumps({"v": 1, "type": "ack", "id": message.get("id")}))
    except ConnectionClosed:
        pass
    finally:
        sockets.pop(channel, None)


async def relay(redis: Redis, prefix: str) -> None:
    pubsub = redis.pubsub()
    await pubsub.psubscribe(f"{prefix}*")
    async for message in pubsub.listen():
        connection = sockets.get(message["channel"]) if message["type"] == "pmessage" else None
        if connection is not None:
            try:
                await connection.send(message["data"])
            except ConnectionClosed:
                pass


async def main(port: int, redis_url: str, prefix: str) -> None:
    redis = Redis.from_url(redis_url, decode_responses=True)
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    relaying = asyncio.create_task(relay(redis, prefix))
    async with serve(follow, "127.0.0.1", port, ping_interval=None, max_queue=None):
        await stop.wait()
    relaying.cancel()
    await redis.aclose()


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--redis-url", required=True)
    parser.add_argument("--prefix", required=True)
    arguments = parser.parse_args()
    asyncio.run(main(arguments.port, arguments.redis_url, arguments.prefix))
