"""A WebSocket server and client for the tests (Python's websockets, Debian's package):
the client sends a text, a long text (compressed: permessage-deflate is the default), a
binary and a ping; the server echoes texts; the client closes.

    python3 ws_peer.py PORT
"""
import asyncio
import sys

import websockets

port = int(sys.argv[1])


async def echo(ws, *_):
    async for m in ws:
        if isinstance(m, str):
            await ws.send("echo: " + m)


async def main():
    async with websockets.serve(echo, "127.0.0.1", port):
        async with websockets.connect(f"ws://127.0.0.1:{port}/chat?room=1") as ws:
            await ws.send("hello")
            assert await ws.recv() == "echo: hello"
            long = "kshark " * 200
            await ws.send(long)
            assert await ws.recv() == "echo: " + long
            await ws.send(bytes([0, 1, 2, 3]))
            pong = await ws.ping()
            await pong
        await asyncio.sleep(0.2)


asyncio.run(main())
