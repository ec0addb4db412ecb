"""The forwarder to a trainee's JupyterLab, run as the trainee: TCP in, her Unix socket out.

``python -P -m dnslab.forward --fd N SOCKET`` accepts connections on the listening socket it
inherited as descriptor N (root bound it on the host's address and port, the only part that
needs root) and relays each to the Unix socket SOCKET, which it connects to with the
trainee's own rights: if she replaces her socket with a link to anything else, the connect
is checked as her, never as root. It runs inside her client node, like her kernels: it has
no way into the host's network beyond the one listening socket it was given.
"""
from __future__ import annotations

import argparse
import asyncio
import socket
import sys

MAX_CONNECTIONS = 64
CHUNK = 1 << 16


async def _pipe(reader: asyncio.StreamReader, writer: asyncio.StreamWriter) -> None:
    try:
        while data := await reader.read(CHUNK):
            writer.write(data)
            await writer.drain()
    except (ConnectionError, OSError):
        pass
    finally:
        writer.close()


async def serve(listener: socket.socket, target: str) -> None:
    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def relay(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        async with slots:
            try:
                s_reader, s_writer = await asyncio.open_unix_connection(target)
            except OSError:
                c_writer.close()
                return
            await asyncio.gather(_pipe(c_reader, s_writer), _pipe(s_reader, c_writer))

    server = await asyncio.start_server(relay, sock=listener)
    async with server:
        await server.serve_forever()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(prog="python -m dnslab.forward", description=__doc__.splitlines()[0])
    ap.add_argument("--fd", type=int, required=True, help="the inherited listening TCP socket")
    ap.add_argument("socket", help="the Unix socket to relay to")
    args = ap.parse_args(argv)
    listener = socket.socket(fileno=args.fd)
    listener.setblocking(False)
    try:
        asyncio.run(serve(listener, args.socket))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
