"""A counting TCP proxy in front of Redis, for round trips per request.

An API process pointed at it (OTP_REDIS_URL=redis://127.0.0.1:<proxy port>/0) has every byte it
sends to Redis parsed here.  A *round trip* is a burst of commands a connection sends before Redis
answers anything: a single command, an EVALSHA (however many calls its script makes inside) and a
whole pipeline each count once.  INFO commandstats can't tell these apart (it counts the commands
scripts run, and pipelined commands one by one), hence the proxy.
"""

from __future__ import annotations

import asyncio
from collections import Counter
from dataclasses import dataclass, field

HOST = "127.0.0.1"
# Connection set-up and housekeeping (redis-py's CLIENT SETINFO, health-check PINGs): a burst made
# only of these is not a request's work.
NOISE = frozenset({"client", "hello", "select", "ping", "info", "auth", "readonly"})


class RespCommands:
    """Incremental parser of client→server RESP: yields each whole command as its arguments."""

    def __init__(self) -> None:
        self._buffer = bytearray()

    def feed(self, data: bytes) -> list[list[bytes]]:
        self._buffer += data
        commands = []
        while (command := self._next()) is not None:
            commands.append(command)
        return commands

    def _next(self) -> list[bytes] | None:
        """One whole command off the buffer, or None if it hasn't fully arrived yet."""
        buf = self._buffer
        line_end = buf.find(b"\r\n")
        if line_end < 0:
            return None
        if buf[:1] != b"*":  # an inline command (redis-cli style): one line
            words = bytes(buf[:line_end]).split()
            del buf[: line_end + 2]
            return words or [b""]
        count, pos, args = int(buf[1:line_end]), line_end + 2, []
        for _ in range(count):
            line_end = buf.find(b"\r\n", pos)
            if line_end < 0:
                return None
            size = int(buf[pos + 1 : line_end])
            start, pos = line_end + 2, line_end + 2 + size + 2
            if pos > len(buf):
                return None
            args.append(bytes(buf[start : start + size]))
        del buf[:pos]
        return args


def name_of(command: list[bytes]) -> str:
    return command[0].decode(errors="replace").lower() if command else ""


@dataclass
class Tally:
    round_trips: int = 0
    noise_round_trips: int = 0
    commands: Counter[str] = field(default_factory=Counter)


class CountingProxy:
    def __init__(self, target_port: int) -> None:
        self.target_port = target_port
        self.tally = Tally()
        self.captured: list[list[bytes]] | None = None  # set to [] to keep whole commands
        self.port = 0
        self._server: asyncio.Server | None = None
        self._tasks: set[asyncio.Task[None]] = set()
        self._writers: set[asyncio.StreamWriter] = set()

    async def start(self) -> int:
        self._server = await asyncio.start_server(self._serve, HOST, 0)
        self.port = int(self._server.sockets[0].getsockname()[1])
        return self.port

    async def stop(self) -> None:
        """Close every connection, so each relay ends on its own (cancelling a relay task makes
        asyncio log a spurious error), then wait for them, bounded."""
        if self._server is not None:
            self._server.close()
        for writer in list(self._writers):
            writer.close()
        if self._tasks:
            await asyncio.wait(set(self._tasks), timeout=5)
        if self._server is not None:
            await self._server.wait_closed()

    def reset(self) -> Tally:
        """The counts so far, and start counting afresh."""
        tally, self.tally = self.tally, Tally()
        return tally

    async def _serve(self, client_r: asyncio.StreamReader, client_w: asyncio.StreamWriter) -> None:
        task = asyncio.current_task()
        assert task is not None
        self._tasks.add(task)
        try:
            server_r, server_w = await asyncio.open_connection(HOST, self.target_port)
        except OSError:
            client_w.close()
            self._tasks.discard(task)
            return
        self._writers |= {client_w, server_w}
        burst = _Burst()
        parser = RespCommands()

        async def upstream() -> None:
            try:
                while data := await client_r.read(1 << 16):
                    commands = parser.feed(data)
                    if self.captured is not None:
                        self.captured += commands
                    burst.on_request(self.tally, [name_of(c) for c in commands])
                    server_w.write(data)
                    await server_w.drain()
            finally:
                server_w.close()  # the client hung up: so does our side of Redis

        async def downstream() -> None:
            try:
                while data := await server_r.read(1 << 16):
                    burst.open = False  # Redis answered: the client's next bytes are a new round trip
                    client_w.write(data)
                    await client_w.drain()
            finally:
                client_w.close()

        try:
            await asyncio.gather(upstream(), downstream())
        except (OSError, RuntimeError):
            pass  # a connection reset mid-way: nothing to count
        finally:
            self._tasks.discard(task)
            self._writers -= {client_w, server_w}


@dataclass
class _Burst:
    """What one connection has sent since Redis last answered it."""

    open: bool = False
    real: bool = False
    noise: bool = False

    def on_request(self, tally: Tally, names: list[str]) -> None:
        if not self.open:
            self.open, self.real, self.noise = True, False, False
        for name in names:
            tally.commands[name] += 1
            if name in NOISE:
                if not (self.real or self.noise):
                    self.noise = True
                    tally.noise_round_trips += 1
            elif not self.real:
                self.real = True
                tally.round_trips += 1
                if self.noise:  # counted as noise when it began; it carried real work after all
                    tally.noise_round_trips -= 1
