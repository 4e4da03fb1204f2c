"""Simulated vLLM replicas (the test bed's, OpenAI API with vLLM's `usage`) for the gateway
tests, in a process of their own:

    python -m tests.envoy.sim_backends VARIANT=MODEL[,ALIAS...] ...   # prints {"VARIANT": port}

Each serves the names a variant's vLLM serves (--served-model-name): its model id, then the
aliases (the variant's and the pool's name). Fast GPUs (speedup) keep the tests quick.
"""

from __future__ import annotations

import asyncio
import json
import logging
import signal
import sys

import structlog

from modelfleet_testbed.sim.replica import start_replica

SPEEDUP = 50.0
PROFILE = "qwen3-30b-a3b/1xH100"


async def serve(specs: list[str]) -> None:
    ports: dict[str, int] = {}
    replicas = []
    for spec in specs:
        variant, _, names = spec.partition("=")
        model, *aliases = names.split(",")
        replica = await start_replica(
            variant, model, PROFILE, aliases=aliases, speedup=SPEEDUP, default_output_tokens=16
        )
        ports[variant] = replica.port
        replicas.append(replica)
    print(json.dumps(ports), flush=True)
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for signum in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(signum, stop.set)
    # The parent holds our stdin: when it goes away (even killed), so do we.
    loop.add_reader(sys.stdin.fileno(), lambda: stop.set() if not sys.stdin.read(1) else None)
    await stop.wait()
    for replica in replicas:
        await replica.stop()


if __name__ == "__main__":
    # stdout carries the ports; the replicas' warnings go to stderr.
    structlog.configure(
        logger_factory=structlog.PrintLoggerFactory(sys.stderr),
        wrapper_class=structlog.make_filtering_bound_logger(logging.WARNING),
    )
    asyncio.run(serve(sys.argv[1:]))
