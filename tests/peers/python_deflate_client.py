"""Python `websockets` with permessage-deflate (its default) through the proxy; prints one JSON result line.

Usage: python3 python_deflate_client.py URL
The proxy's target is an echo server. Text-like data (log lines) and binary data go out, their echoes are
compared; the extension the proxy agreed to is reported (websockets negotiates permessage-deflate by default
and validates the server's answer and every compressed frame).
"""
import asyncio
import hashlib
import json
import sys

import websockets


async def main(url):
    result = {}
    async with websockets.connect(url, subprotocols=["binary"], max_size=None) as ws:
        result["extensions"] = [type(extension).__name__ for extension in ws.extensions]
        result["response"] = ws.response_headers.get("Sec-WebSocket-Extensions")
        lines = "".join(
            f"2026-12-01T02:{i % 60:02d}:00Z INFO session {i} ended by client (1000): {i * 37} bytes\n"
            for i in range(3000)
        ).encode()
        binary = bytes((i * 7 + 3) % 256 for i in range(200_000))
        for payload in (lines, binary):
            await ws.send(payload)
            received = b""
            while len(received) < len(payload):
                received += await asyncio.wait_for(ws.recv(), 10)
            result.setdefault("echo_ok", []).append(
                hashlib.sha256(received).hexdigest() == hashlib.sha256(payload).hexdigest()
            )
        await ws.send("text goes through as bytes " * 10)
        result["text_echo"] = (await asyncio.wait_for(ws.recv(), 5)).decode()
        await ws.close()
        result["close_code"] = ws.close_code
    print(json.dumps(result))


asyncio.run(asyncio.wait_for(main(sys.argv[1]), 30))
