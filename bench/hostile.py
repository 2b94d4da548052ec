#!/usr/bin/env python3
"""The attackers of the hostile-traffic run (issue 14 item 7; bench/hostile.sh drives it).

Python 3.11 standard library only (asyncio, hmac): nothing to install, nothing to pin. Four attacks at
once, each as a hostile client would make it, until SIGTERM or --duration:

  bot       holds the buyers' showtimes under --bots user ids: reads a showtime's availability, then
            holds its free seats ten at a time (MAX_SEATS_PER_HOLD), each hold under the next user id,
            and reads again (so a seat is held again as soon as it is free); --bot-concurrency such
            loops at once;
  hammer    one user id hammering POST /hold (one random seat a request, --hammer-concurrency in
            flight), ignoring every 409 and 429;
  slowloris --slowloris connections to the facade, each sending a request head one header line every
            --trickle seconds and never finishing it; a connection the facade closes is opened again;
  wsflood   --ws-flooders WebSocket connections to the gateway, each sending subscribe frames for the
            buyers' showtimes as fast as the socket takes them, reading (and discarding) what comes
            back; a connection the gateway drops is opened again.

Besides, a probe (not an attacker) opens a WebSocket once a second, subscribes to one of the buyers'
showtimes and times its first snapshot: what a real browser waits for during the flood.

On exit it prints one JSON object with what each attack did (and writes it to --report). The random
choices are seeded (--seed).
"""

import argparse
import asyncio
import base64
import hashlib
import hmac
import json
import os
import random
import resource
import signal
import struct
import sys
import time


def local(source: str | None):
    """asyncio's local_addr for a source address of the loopback range (127.0.0.x), or None."""
    return (source, 0) if source else None


def outcome(status: int, content: bytes) -> str:
    """A status, and for a 409 or a 429 the error code: 409_SEAT_LIMIT_REACHED, 429_RATE_LIMITED, ..."""
    if status in (409, 429):
        try:
            return f"{status}_{json.loads(content)['error']['code']}"
        except Exception:
            return str(status)
    return str(status)


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def token(secret: str, sub: str, issuer: str | None, audience: str | None) -> str:
    now = int(time.time())
    claims = {"sub": sub, "iat": now, "exp": now + 3600}
    if issuer:
        claims["iss"] = issuer
    if audience:
        claims["aud"] = audience
    head = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}, separators=(",", ":")).encode())
    body = b64url(json.dumps(claims, separators=(",", ":")).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{b64url(signature)}"


class Stats:
    def __init__(self):
        self.counts: dict[str, dict[str, int]] = {}
        self.peaks: dict[str, int] = {}
        self.levels: dict[str, int] = {}

    def count(self, attack: str, what: str, by: int = 1):
        bucket = self.counts.setdefault(attack, {})
        bucket[what] = bucket.get(what, 0) + by

    def level(self, name: str, delta: int):
        self.levels[name] = self.levels.get(name, 0) + delta
        self.peaks[name] = max(self.peaks.get(name, 0), self.levels[name])


class HTTPConnection:
    """One keep-alive HTTP/1.1 connection; reconnects when the server closes it."""

    def __init__(self, host: str, port: int, source: str | None = None):
        self.host, self.port, self.source = host, port, source
        self.reader = self.writer = None

    async def request(self, method: str, path: str, headers: dict[str, str], body: bytes) -> int:
        status, _ = await self.exchange(method, path, headers, body)
        return status

    async def exchange(self, method: str, path: str, headers: dict[str, str], body: bytes) -> tuple[int, bytes]:
        if self.writer is None:
            self.reader, self.writer = await asyncio.open_connection(self.host, self.port, local_addr=local(self.source))
        lines = [f"{method} {path} HTTP/1.1", f"Host: {self.host}:{self.port}", f"Content-Length: {len(body)}"]
        lines += [f"{name}: {value}" for name, value in headers.items()]
        self.writer.write(("\r\n".join(lines) + "\r\n\r\n").encode() + body)
        try:
            await self.writer.drain()
            head = await self.reader.readuntil(b"\r\n\r\n")
            status = int(head.split(b" ", 2)[1])
            length, close = 0, False
            for line in head.split(b"\r\n")[1:]:
                name, _, value = line.partition(b":")
                if name.strip().lower() == b"content-length":
                    length = int(value.strip())
                elif name.strip().lower() == b"connection" and value.strip().lower() == b"close":
                    close = True
            content = await self.reader.readexactly(length)
        except Exception:
            self.close()
            raise
        if close:
            self.close()
        return status, content

    def close(self):
        if self.writer is not None:
            self.writer.close()
        self.reader = self.writer = None


async def holder(name, args, stats, stop, rng, user_for, seats_per_hold):
    host, port = args.facade.split(":")
    connection = HTTPConnection(host, int(port), args.hammer_source)
    showtimes = args.showtimes.split(",")
    while not stop.is_set():
        user, bearer = user_for(rng)
        seats = rng.sample(range(1, args.seats + 1), seats_per_hold)
        body = json.dumps({"showtimeId": rng.choice(showtimes), "seatIds": [f"s{n}" for n in seats]}).encode()
        try:
            status, content = await connection.exchange(
                "POST", "/hold", {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}, body
            )
            stats.count(name, outcome(status, content))
        except Exception as error:
            stats.count(name, type(error).__name__)
            await asyncio.sleep(0.05)  # a refused or reset connection: try again a little later


async def bot(args, stats, stop, rng, tokens):
    host, port = args.facade.split(":")
    connection = HTTPConnection(host, int(port), args.bot_source)
    showtimes = args.showtimes.split(",")
    next_user = rng.randrange(len(tokens))
    while not stop.is_set():
        showtime = rng.choice(showtimes)
        try:
            status, content = await connection.exchange("GET", f"/availability?showtimeId={showtime}", {}, b"")
            stats.count("bot", f"availability_{outcome(status, content)}")
            if status != 200:
                await asyncio.sleep(0.2)  # not provisioned yet, or refused: look again shortly
                continue
            free = [seat["seatId"] for seat in json.loads(content)["availability"] if seat["state"] == "available"]
            rng.shuffle(free)
            for start in range(0, min(len(free), 200), 10):
                if stop.is_set():
                    break
                _, bearer = tokens[next_user % len(tokens)]
                next_user += 1
                body = json.dumps({"showtimeId": showtime, "seatIds": free[start : start + 10]}).encode()
                status, content = await connection.exchange(
                    "POST", "/hold", {"Authorization": f"Bearer {bearer}", "Content-Type": "application/json"}, body
                )
                stats.count("bot", outcome(status, content))
        except Exception as error:
            stats.count("bot", type(error).__name__)
            await asyncio.sleep(0.05)


async def slowloris(index, args, stats, stop):
    host, port = args.facade.split(":")
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, int(port), local_addr=local(args.slowloris_source))
            stats.count("slowloris", "opened")
            opened = time.monotonic()
            stats.level("slowloris_open", 1)
            try:
                writer.write(f"POST /hold HTTP/1.1\r\nHost: {host}\r\nContent-Type: application/json\r\n".encode())
                await writer.drain()
                line = 0
                while not stop.is_set():
                    # Wait for the next trickle, or for the server to answer or close (then open again).
                    try:
                        data = await asyncio.wait_for(reader.read(4096), timeout=args.trickle)
                        if not data:
                            # At once (the per-address connection limit), or later (the header timeout).
                            soon = time.monotonic() - opened < 0.5
                            stats.count("slowloris", "closed_at_once" if soon else "closed_later")
                            break
                        stats.count("slowloris", "answered")
                        break
                    except asyncio.TimeoutError:
                        pass
                    line += 1
                    writer.write(f"X-Trickle-{line}: {index}\r\n".encode())
                    await writer.drain()
            finally:
                stats.level("slowloris_open", -1)
        except Exception as error:
            stats.count("slowloris", type(error).__name__)
        finally:
            if writer is not None:
                writer.close()
        if not stop.is_set():
            await asyncio.sleep(1)


def ws_frame(text: str) -> bytes:
    payload = text.encode()
    mask = os.urandom(4)
    masked = bytes(b ^ mask[i % 4] for i, b in enumerate(payload))
    if len(payload) < 126:
        return bytes([0x81, 0x80 | len(payload)]) + mask + masked
    return bytes([0x81, 0x80 | 126]) + struct.pack(">H", len(payload)) + mask + masked


async def ws_flooder(index, args, stats, stop, rng):
    host, port = args.gateway.split(":")
    showtimes = args.showtimes.split(",")
    frames = [ws_frame(json.dumps({"type": "subscribe", "showtimeId": s})) for s in showtimes]
    while not stop.is_set():
        writer = None
        try:
            reader, writer = await asyncio.open_connection(host, int(port), local_addr=local(args.ws_source))
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET / HTTP/1.1\r\nHost: {host}:{port}\r\nUpgrade: websocket\r\nConnection: Upgrade\r\n"
                    f"Sec-WebSocket-Key: {key}\r\nSec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = await reader.readuntil(b"\r\n\r\n")
            if not head.startswith(b"HTTP/1.1 101"):
                stats.count("wsflood", "upgrade_refused_" + head.split(b" ", 2)[1].decode())
                await asyncio.sleep(1)
                continue
            stats.count("wsflood", "connected")

            async def drain_incoming():
                received = 0
                while True:
                    data = await reader.read(65536)
                    if not data:
                        return received
                    received += len(data)
                    stats.count("wsflood", "bytes_received", len(data))

            reading = asyncio.ensure_future(drain_incoming())
            try:
                while not stop.is_set() and not reading.done():
                    writer.write(b"".join(rng.choice(frames) for _ in range(100)))
                    await writer.drain()
                    stats.count("wsflood", "frames_sent", 100)
            finally:
                reading.cancel()
            if not stop.is_set():
                stats.count("wsflood", "dropped_by_gateway")
        except Exception as error:
            stats.count("wsflood", type(error).__name__)
            await asyncio.sleep(0.5)
        finally:
            if writer is not None:
                writer.close()


async def probe(args, stats, stop, rng, waits):
    host, port = args.gateway.split(":")
    showtimes = args.showtimes.split(",")
    while not stop.is_set():
        writer = None
        started = time.monotonic()
        try:
            reader, writer = await asyncio.open_connection(host, int(port), local_addr=local(args.probe_source))
            key = base64.b64encode(os.urandom(16)).decode()
            writer.write(
                (
                    f"GET /?showtimeId={rng.choice(showtimes)} HTTP/1.1\r\nHost: {host}:{port}\r\n"
                    f"Upgrade: websocket\r\nConnection: Upgrade\r\nSec-WebSocket-Key: {key}\r\n"
                    f"Sec-WebSocket-Version: 13\r\n\r\n"
                ).encode()
            )
            head = await asyncio.wait_for(reader.readuntil(b"\r\n\r\n"), timeout=30)
            if not head.startswith(b"HTTP/1.1 101"):
                stats.count("probe", "upgrade_refused")
            else:
                # Until the first message's "type" (its last key: keys are sorted) has arrived: the whole
                # snapshot, or an error.
                seen = b""
                while b'"type":"' not in seen:
                    data = await asyncio.wait_for(reader.read(65536), timeout=30)
                    if not data:
                        break
                    seen = (seen + data)[-8192:]
                kind = "snapshot" if b'"type":"snapshot"' in seen else "other"
                stats.count("probe", kind)
                if kind == "snapshot":
                    waits.append(time.monotonic() - started)
        except Exception as error:
            stats.count("probe", type(error).__name__)
        finally:
            if writer is not None:
                writer.close()
        try:
            await asyncio.wait_for(stop.wait(), timeout=1)
        except asyncio.TimeoutError:
            pass


async def main(args) -> dict:
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (min(hard, max(soft, args.slowloris + 1024)), hard))
    stats = Stats()
    stop = asyncio.Event()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGTERM, signal.SIGINT):
        loop.add_signal_handler(sig, stop.set)
    master = random.Random(args.seed)
    bot_tokens = [
        (f"bot-{n}", token(args.secret, f"bot-{n}", args.issuer, args.audience)) for n in range(args.bots)
    ]
    hammer_token = token(args.secret, "hammer-user", args.issuer, args.audience)
    tasks = []
    attacks = set(args.attacks.split(","))
    unknown = attacks - {"bot", "hammer", "slowloris", "wsflood"}
    if unknown:
        raise SystemExit(f"hostile: unknown attacks {sorted(unknown)} (bot, hammer, slowloris, wsflood)")
    if "bot" not in attacks:
        args.bot_concurrency = 0
    if "hammer" not in attacks:
        args.hammer_concurrency = 0
    if "slowloris" not in attacks:
        args.slowloris = 0
    if "wsflood" not in attacks:
        args.ws_flooders = 0
    for index in range(args.bot_concurrency):
        tasks.append(bot(args, stats, stop, random.Random(master.random()), bot_tokens))
    for index in range(args.hammer_concurrency):
        tasks.append(
            holder(
                "hammer", args, stats, stop, random.Random(master.random()), lambda r: ("hammer-user", hammer_token), 1
            )
        )
    tasks += [slowloris(index, args, stats, stop) for index in range(args.slowloris)]
    tasks += [ws_flooder(index, args, stats, stop, random.Random(master.random())) for index in range(args.ws_flooders)]
    waits: list[float] = []
    tasks.append(probe(args, stats, stop, random.Random(master.random()), waits))
    started = time.monotonic()
    running = [asyncio.ensure_future(task) for task in tasks]
    print(f"hostile: {len(running)} attackers started", file=sys.stderr, flush=True)
    try:
        await asyncio.wait_for(stop.wait(), timeout=args.duration)
    except asyncio.TimeoutError:
        stop.set()
    elapsed = time.monotonic() - started
    for task in running:
        task.cancel()
    await asyncio.gather(*running, return_exceptions=True)
    report = {"seconds": round(elapsed, 1), "attacks": stats.counts, "peaks": stats.peaks}
    if waits:
        waits.sort()
        report["probe_first_snapshot_ms"] = {
            "count": len(waits),
            "p50": round(1000 * waits[len(waits) // 2], 1),
            "max": round(1000 * waits[-1], 1),
        }
    for attack in ("bot", "hammer"):
        total = sum(
            v for k, v in stats.counts.get(attack, {}).items() if k.removeprefix("availability_")[:3].isdigit()
        )
        report.setdefault("rates", {})[attack + "_requests_per_second"] = round(total / max(elapsed, 0.001), 1)
    frames = stats.counts.get("wsflood", {}).get("frames_sent", 0)
    report.setdefault("rates", {})["ws_frames_per_second"] = round(frames / max(elapsed, 0.001), 1)
    return report


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--facade", required=True, help="host:port of the REST facade")
    parser.add_argument("--gateway", required=True, help="host:port of the realtime gateway")
    parser.add_argument("--secret", required=True, help="the facade's HS256 JWT secret")
    parser.add_argument("--issuer")
    parser.add_argument("--audience")
    parser.add_argument("--showtimes", required=True, help="the buyers' showtimes, comma-separated")
    parser.add_argument("--seats", type=int, required=True, help="seats per showtime (s1 .. sN)")
    parser.add_argument("--duration", type=float, default=3600, help="seconds (SIGTERM ends it sooner)")
    parser.add_argument("--bots", type=int, default=1000)
    parser.add_argument("--bot-concurrency", type=int, default=16)
    parser.add_argument("--hammer-concurrency", type=int, default=16)
    parser.add_argument("--slowloris", type=int, default=1000)
    parser.add_argument("--trickle", type=float, default=5.0)
    parser.add_argument("--ws-flooders", type=int, default=4)
    parser.add_argument("--seed", type=int, default=14)
    parser.add_argument("--attacks", default="bot,hammer,slowloris,wsflood", help="which attacks, comma-separated")
    parser.add_argument("--report")
    # Source addresses (127.0.0.x: every one of them is the loopback interface's on Linux): each attack
    # from an address of its own, as on the Internet, so the facade's per-address limits see it as such.
    parser.add_argument("--bot-source", help="the bot's source address (all its user ids from it)")
    parser.add_argument("--hammer-source", help="the hammering user's source address")
    parser.add_argument("--slowloris-source", help="the slowloris connections' source address")
    parser.add_argument("--ws-source", help="the WebSocket flooders' source address")
    parser.add_argument("--probe-source", help="the probe's source address")
    arguments = parser.parse_args()
    result = asyncio.run(main(arguments))
    text = json.dumps(result, sort_keys=True)
    if arguments.report:
        with open(arguments.report, "w") as file:
            file.write(text + "\n")
    print(text)
