"""A strict third-party WebSocket client (Python `websockets`) driving the proxy; prints one JSON result line.

Usage: python3 python_websockets_client.py URL
The proxy's target is an echo server. websockets validates the handshake, the framing (server frames must be
unmasked, RSV clear, control frames short) and the closing handshake; any violation raises here.
"""
import asyncio
import hashlib
import json
import sys

import websockets


async def main(url):
    result = {}
    async with websockets.connect(url, subprotocols=["binary"], max_size=None) as ws:
        result["subprotocol"] = ws.subprotocol
        payload = bytes((i * 7 + 3) % 256 for i in range(300_000))
        await ws.send(payload)
        received = b""
        while len(received) < len(payload):
            message = await asyncio.wait_for(ws.recv(), 10)
            received += message
        result["echo_ok"] = hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()
        pong_waiter = await ws.ping(b"strict")
        await asyncio.wait_for(pong_waiter, 5)
        result["pong"] = True
        await ws.send("text goes through as bytes")
        result["text_echo"] = (await asyncio.wait_for(ws.recv(), 5)).decode()
        await ws.close(code=4001, reason="strict client done")
        result["close_code"] = ws.close_code
        result["close_reason"] = ws.close_reason
    print(json.dumps(result))


asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
