"""The payment provider answering every call in `--delay-s` seconds: the fault suite's proxy
(bench/faults_support/provider.py) held in its slow mode, in a process of its own so that its
waits cost the bench's socket loop nothing. On SIGTERM it prints {"slowed": n} and exits.

    python -m bench.realtime_support.slow_provider --upstream URL --port P [--delay-s 2]
"""

import argparse
import asyncio
import json
import signal

from bench.faults_support import provider


async def serve(upstream: str, port: int, delay_s: float) -> int:
    provider.SLOW_S = delay_s
    proxy = provider.ProviderProxy(upstream, port, timeout_hang_s=0)
    proxy.mode = "slow"
    stop = asyncio.Event()
    for signum in (signal.SIGTERM, signal.SIGINT):
        asyncio.get_running_loop().add_signal_handler(signum, stop.set)
    await proxy.start()
    await stop.wait()
    await proxy.stop()
    return proxy.affected["slowed"]


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--upstream", required=True)
    parser.add_argument("--port", type=int, required=True)
    parser.add_argument("--delay-s", type=float, default=provider.SLOW_S)
    arguments = parser.parse_args()
    print(json.dumps({"slowed": asyncio.run(serve(arguments.upstream, arguments.port, arguments.delay_s))}), flush=True)
