"""A forwarder: connections accepted on an inherited listening socket, relayed to one target.

``python -P -m dnslab.forward --fd N --unix SOCKET`` is the way into a trainee's JupyterLab, run
as the trainee inside her client node: it accepts on the socket root bound on the host's
address and port (the only part that needs root) and relays each connection to her Unix
socket SOCKET, connected with her own rights: if she replaces her socket with a link to
anything else, the connect is checked as her, never as root. It has no way into the host's
network beyond the one listening socket it was given.

``--tcp HOST:PORT`` is the other direction, the hub's API as her server sees it: the
listening socket was made inside her client node (at 127.0.0.1), the forwarder runs as the
hub's user on the host and relays to the hub's API there. A socket stays in the network
namespace it was made in, whoever holds it.
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


async def serve(listener: socket.socket, unix: str | None = None, tcp: tuple[str, int] | None = None) -> None:
    slots = asyncio.Semaphore(MAX_CONNECTIONS)

    async def relay(c_reader: asyncio.StreamReader, c_writer: asyncio.StreamWriter) -> None:
        async with slots:
            try:
                s_reader, s_writer = await (asyncio.open_unix_connection(unix) if unix
                                            else asyncio.open_connection(*tcp))
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
    to = ap.add_mutually_exclusive_group(required=True)
    to.add_argument("--unix", metavar="SOCKET", help="relay to this Unix socket")
    to.add_argument("--tcp", metavar="HOST:PORT", help="relay to this TCP address")
    args = ap.parse_args(argv)
    tcp = None
    if args.tcp:
        host, _, port = args.tcp.rpartition(":")
        tcp = (host.strip("[]"), int(port))
    listener = socket.socket(fileno=args.fd)
    listener.setblocking(False)
    try:
        asyncio.run(serve(listener, args.unix, tcp))
    except KeyboardInterrupt:
        pass
    return 0


if __name__ == "__main__":
    sys.exit(main())
