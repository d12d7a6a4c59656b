"""A hand-written nats-py relay doing json-map's work, the native baseline of
the Python stage in tests/benches/languages.rs: subscribe to `in`, parse
each event, add the fields, serialise, publish to `out` (headers kept).

    python relay.py NATS_URL FIELDS_JSON

Prints `ready` once the subscription is at the server; runs until killed.
"""

import asyncio
import json
import sys

import nats


async def main() -> None:
    url, fields = sys.argv[1], json.loads(sys.argv[2])
    nc = await nats.connect(url)

    async def relay(msg) -> None:
        event = json.loads(msg.data)
        event.update(fields)
        payload = json.dumps(event, ensure_ascii=False, separators=(",", ":")).encode()
        await nc.publish("out", payload, headers=msg.headers)

    # Large pending limits: the bench publishes as fast as it can, and a
    # relay that fell behind should be slow, not drop.
    await nc.subscribe("in", cb=relay, pending_msgs_limit=1 << 21, pending_bytes_limit=1 << 30)
    await nc.flush()
    print("ready", flush=True)
    await asyncio.Event().wait()


asyncio.run(main())
