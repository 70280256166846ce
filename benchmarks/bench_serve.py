"""The gateway's numbers (issue 15), on loopback: overhead, kill -9 durability, shared limits, detection.

Sections (``--sections``, comma list; all by default; ``--quick`` shrinks every count):

- ``overhead``: p50/p99 latency of ``zoo:digits-cnn`` at batch 1 and 16, in-process (the model called
  directly), under a bare FastAPI endpoint written here (parse JSON -> tensor -> model -> labels: the
  floor a user would write by hand, uvicorn with its defaults) and through ``bastion serve`` (SQLite
  audit log, one durable record per request, group-committed), at 1 and ``--clients`` concurrent
  clients. The load comes from a second process (this script with ``--loadgen``: httpx async, one
  connection per client).
  Throughput (req/s) for the gateway with 1 and 2 server processes (two ``bastion serve`` processes
  on two ports sharing the database and a Redis limiter, the load spread over both; ``--workers 2``
  runs the same arrangement on one port).
- ``durability``: ``--kills`` kill -9 of a gateway under sustained load from client threads, restarted
  each time on the same SQLite database: answered 200s without an audit record (goal 0), the requests
  lost in flight, the records of those written before the kill, ``bastion log verify``.
- ``limits``: two gateway processes on Redis, one key limited to ``--rate`` per second (burst = rate)
  hammered through both for ``--seconds``: requests allowed per second (goal R +- 1) and in total
  (burst + R x t).
- ``detection``: bastion's own attacks through a gateway (this script with ``--detect-server``:
  create_app with PRADA, the stateful detector and the out-of-distribution rate detector, the last two
  calibrated on the digits training split) as ``oip:`` victims with ``BASTION_API_KEY``, one key each:
  Jacobian augmentation -> PRADA, Knockoff with a Fashion-MNIST pool -> OOD, HopSkipJump and Square ->
  stateful; the queries (rows) a key had sent when each detector first flagged it, read from the audit
  log's ``flags``. Then what evades: the same attacks spread over ``--sybils`` keys, Knockoff from an
  in-distribution pool. Then benign keys each sending the digits test split (never used for
  calibration) in its own order, ``--benign-rows`` rows a request: alerts (goal 0).

The machine these run on has 2 cores shared with other work: the load generator, the servers and this
script compete for them, so the latencies are an upper bound of what the gateway costs on a quiet box.

    python benchmarks/bench_serve.py                    # everything (about 10 minutes on 2 cores)
    python benchmarks/bench_serve.py --quick --sections overhead,limits
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import random
import statistics
import subprocess
import sys
import tempfile
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import torch

HERE = Path(__file__).resolve().parent
sys.path.insert(0, str(HERE))

from _common import environment, markdown  # noqa: E402
from bastion.serve.process import GatewayProcess, free_port  # noqa: E402

MODEL = "zoo:digits-cnn"
SERVED = "digits-cnn"
REDIS = "redis://127.0.0.1:6379/0"
FASHION = Path(os.environ.get("BASTION_DATA", "/work/shared/data")) / "fashion-mnist"
SECTIONS = ("overhead", "durability", "limits", "detection")


# -- processes --------------------------------------------------------------------------------------


def child_env() -> dict[str, str]:
    return {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}


def gateway_server(workdir: Path, db: str, limits: str = "memory") -> GatewayProcess:
    return GatewayProcess.gateway(MODEL, workdir, db, limits=limits)


def script_server(mode: str, workdir: Path, *extra: str) -> GatewayProcess:
    """This script in one of its server modes (a bare FastAPI endpoint, the detection server)."""
    port = free_port()
    return GatewayProcess(
        [sys.executable, str(Path(__file__).resolve()), mode, str(port), *extra], workdir, port
    )


def make_key(db: str, name: str, **scope: Any) -> tuple[str, str]:
    from bastion.serve.keys import KeyStore, Scope

    key, token = KeyStore(db).create(name, Scope(**scope))
    return key.key_id, token


def unlimited_key(db: str, name: str, output: str = "labels") -> tuple[str, str]:
    return make_key(db, name, rate=1e6, burst=1_000_000, daily_quota=None, output=output)


def digits_rows(split: str = "test") -> torch.Tensor:
    from bastion.data import load_dataset

    return load_dataset("digits", split=split).x.float()


def predict_body(x: torch.Tensor) -> dict[str, Any]:
    return {"model": SERVED, "inputs": x.tolist()}


def pct(values: Sequence[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, math.ceil(q / 100 * len(ordered)) - 1))]


# -- the load generator (a second process) ----------------------------------------------------------


async def _load(urls: list[str], token: str, body: bytes, clients: int, requests: int, warmup: int) -> dict:
    import httpx

    headers = {"Authorization": f"Bearer {token}", "Content-Type": "application/json"}
    latencies: list[float] = []
    statuses: Counter[int] = Counter()
    counter = iter(range(requests + warmup))

    async def client(i: int) -> None:
        limits = httpx.Limits(max_connections=1)
        async with httpx.AsyncClient(base_url=urls[i % len(urls)], headers=headers, limits=limits) as c:
            for n in counter:
                t = time.perf_counter()
                r = await c.post("/v1/predict", content=body, timeout=60.0)
                if n >= warmup:
                    latencies.append((time.perf_counter() - t) * 1000.0)
                    statuses[r.status_code] += 1

    start = time.perf_counter()
    await asyncio.gather(*(client(i) for i in range(clients)))
    wall = time.perf_counter() - start
    return {"latencies_ms": latencies, "statuses": dict(statuses), "wall_s": wall}


def loadgen_main(spec_path: str) -> None:
    spec = json.loads(Path(spec_path).read_text())
    body = Path(spec["body"]).read_bytes()
    result = asyncio.run(
        _load(spec["urls"], spec["token"], body, spec["clients"], spec["requests"], spec["warmup"])
    )
    print(json.dumps(result))


def run_load(
    workdir: Path, urls: list[str], token: str, body: dict, clients: int, requests: int
) -> dict[str, Any]:
    body_path = workdir / "body.json"
    body_path.write_text(json.dumps(body))
    spec = {
        "urls": urls,
        "token": token,
        "body": str(body_path),
        "clients": clients,
        "requests": requests,
        "warmup": min(50, requests // 10),
    }
    spec_path = workdir / "load.json"
    spec_path.write_text(json.dumps(spec))
    done = subprocess.run(
        [sys.executable, str(Path(__file__).resolve()), "--loadgen", str(spec_path)],
        env=child_env(),
        capture_output=True,
        text=True,
        check=True,
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    lat = result["latencies_ms"]
    ok = result["statuses"].get("200", 0)
    return {
        "p50": statistics.median(lat),
        "p99": pct(lat, 99),
        "rps": (len(lat) + spec["warmup"]) / result["wall_s"],  # every request answered in the wall time
        "ok": ok,
        "n": len(lat),
        "statuses": result["statuses"],
    }


# -- a bare FastAPI endpoint (the floor) ------------------------------------------------------------


def bare_server_main(port: str) -> None:
    import uvicorn
    from fastapi import FastAPI

    from bastion.zoo import load

    model = load(SERVED)
    app = FastAPI()

    @app.get("/readyz")
    async def ready() -> dict[str, bool]:
        return {"ready": True}

    @app.post("/v1/predict")
    async def predict(body: dict) -> dict[str, Any]:  # FastAPI parses the JSON body into the dict
        x = torch.tensor(body["inputs"], dtype=torch.float32)
        with torch.no_grad():
            labels = model(x).argmax(1)
        return {"labels": labels.tolist()}

    uvicorn.run(app, host="127.0.0.1", port=int(port))


# -- a gateway with every detector (the detection section) ------------------------------------------


def detect_server_main(port: str, db: str) -> None:
    import uvicorn

    from bastion.serve.app import create_app
    from bastion.serve.audit_log import AuditLog
    from bastion.serve.config import GatewayConfig
    from bastion.serve.detect import PRADA, OODRateDetector, StatefulDetector
    from bastion.serve.keys import KeyStore
    from bastion.serve.limits import MemoryLimiter
    from bastion.zoo import load

    model = load(SERVED)
    train = digits_rows("train")
    with torch.no_grad():
        probs = torch.softmax(model(train), dim=1)
    detectors = [
        PRADA(),
        StatefulDetector().calibrate(train),
        OODRateDetector().calibrate(train, probs),
    ]
    config = GatewayConfig(
        models={SERVED: MODEL}, port=int(port), db=db, detectors=("prada", "stateful", "ood")
    )
    app = create_app(
        config,
        models={SERVED: model},
        keys=KeyStore(db),
        limiter=MemoryLimiter(),
        log=AuditLog(db),
        detectors=detectors,
    )
    uvicorn.run(app, host="127.0.0.1", port=int(port), log_level="warning")


# -- overhead ---------------------------------------------------------------------------------------


def in_process(x: torch.Tensor, calls: int) -> tuple[float, float]:
    from bastion.zoo import load

    model = load(SERVED)
    times = []
    with torch.no_grad():
        for i in range(calls + 20):
            t = time.perf_counter()
            model(x).argmax(1).tolist()
            if i >= 20:
                times.append((time.perf_counter() - t) * 1000.0)
    return statistics.median(times), pct(times, 99)


def section_overhead(args: argparse.Namespace, workdir: Path) -> None:
    db = f"sqlite:///{workdir / 'overhead.db'}"
    _, token = unlimited_key(db, "bench")
    test = digits_rows()
    bare = script_server("--bare-server", workdir).spawn()
    gateway = gateway_server(workdir, db).spawn()
    bare.wait_ready()
    gateway.wait_ready()
    rows = []
    try:
        for batch in args.batches:
            x = test[:batch]
            body = predict_body(x)
            p50, p99 = in_process(x, args.requests)
            rows.append([batch, "-", "in-process", f"{p50:.2f}", f"{p99:.2f}", "-", "-"])
            for clients in (1, args.clients):
                measured = {}
                for name, server in (("bare FastAPI", bare), ("gateway", gateway)):
                    m = run_load(workdir, [server.url], token, body, clients, args.requests)
                    measured[name] = m
                    over = ""
                    if name == "gateway":
                        b = measured["bare FastAPI"]
                        over = f"+{m['p50'] - b['p50']:.2f} / +{m['p99'] - b['p99']:.2f}"
                    rows.append(
                        [batch, clients, name, f"{m['p50']:.2f}", f"{m['p99']:.2f}", f"{m['rps']:.0f}", over]
                    )
                    assert m["ok"] == m["n"], m["statuses"]
    finally:
        bare.stop()
        gateway.stop()
    print(f"\n### Overhead (digits-cnn, {args.requests} requests per row, SQLite audit log)\n")
    print(
        markdown(
            ["batch", "clients", "server", "p50 ms", "p99 ms", "req/s", "gateway - bare (p50 / p99 ms)"], rows
        )
    )
    components(workdir, token, db)
    throughput(args, workdir)


def components(workdir: Path, token: str, db: str, calls: int = 200) -> None:
    """In-process cost of the gateway's two database steps per request, on the same SQLite file."""
    from bastion.serve.audit_log import AuditLog, AuditRecord
    from bastion.serve.keys import KeyStore

    store, log = KeyStore(db), AuditLog(db)
    rows = []
    for name, step in (
        ("KeyStore.authenticate", lambda i: store.authenticate(token)),
        ("AuditLog.append (durable)", lambda i: log.append(
            AuditRecord(f"bench-{i}", "k", time.time(), "predict", SERVED, 200, 1, "0" * 64, {"labels": [1]},
                        "labels", 1.0))),
    ):  # fmt: skip
        times = []
        for i in range(calls):
            t = time.perf_counter()
            step(i)
            times.append((time.perf_counter() - t) * 1000.0)
        rows.append([name, f"{statistics.median(times):.2f}", f"{pct(times, 99):.2f}"])
    print(f"\n### Where a request's time goes: the database steps in-process ({calls} calls, SQLite)\n")
    print(markdown(["step", "p50 ms", "p99 ms"], rows))


def throughput(args: argparse.Namespace, workdir: Path) -> None:
    """Gateway req/s with 1 and 2 server processes (the same database; Redis limits for two)."""
    db = f"sqlite:///{workdir / 'throughput.db'}"
    _, token = unlimited_key(db, "bench")
    body = predict_body(digits_rows()[:1])
    rows = []
    for processes in (1, 2):
        limits = REDIS if processes == 2 and redis_ok() else "memory"
        servers = [gateway_server(workdir, db, limits).spawn() for _ in range(processes)]
        try:
            for s in servers:
                s.wait_ready()
            m = run_load(workdir, [s.url for s in servers], token, body, args.clients, args.requests)
        finally:
            for s in servers:
                s.stop()
        rows.append(
            [
                processes,
                limits.split(":")[0],
                args.clients,
                f"{m['rps']:.0f}",
                f"{m['p50']:.2f}",
                f"{m['p99']:.2f}",
            ]
        )
    print(f"\n### Gateway throughput (batch 1, {args.clients} clients, {args.requests} requests)\n")
    print(markdown(["server processes", "limits", "clients", "req/s", "p50 ms", "p99 ms"], rows))


# -- durability -------------------------------------------------------------------------------------


class Client(threading.Thread):
    def __init__(self, url: str, token: str, body: dict, stop: threading.Event) -> None:
        super().__init__(daemon=True)
        self.url, self.token, self.body, self.stop = url, token, body, stop
        self.answered: list[tuple[int, str]] = []
        self.lost = 0

    def run(self) -> None:
        import httpx

        with httpx.Client(base_url=self.url, headers={"X-API-Key": self.token}, timeout=30.0) as c:
            while not self.stop.is_set():
                try:
                    r = c.post("/v1/predict", json=self.body)
                except httpx.ConnectError:
                    time.sleep(0.02)
                    continue
                except httpx.TransportError:
                    self.lost += 1
                    continue
                self.answered.append((r.status_code, r.headers["X-Request-ID"]))


def section_durability(args: argparse.Namespace, workdir: Path) -> None:
    from bastion.serve.audit_log import AuditLog

    db = f"sqlite:///{workdir / 'durability.db'}"
    _, token = unlimited_key(db, "bench")
    server = gateway_server(workdir, db).start()
    stop = threading.Event()
    body = predict_body(digits_rows()[:4])
    clients = [Client(server.url, token, body, stop) for _ in range(args.durability_clients)]
    for c in clients:
        c.start()
    rng = random.Random(0)

    def served() -> int:
        return sum(1 for c in clients for s, _ in c.answered if s == 200)

    t0 = time.monotonic()
    try:
        for _ in range(args.kills):
            time.sleep(rng.uniform(0.5, 1.5))  # sustained load, then the kill lands anywhere
            server.kill()
            server.start()
        target = served() + 20
        while served() < target:
            time.sleep(0.01)
    finally:
        stop.set()
        for c in clients:
            c.join(timeout=30)
        server.stop()
    wall = time.monotonic() - t0
    answered = {rid: s for c in clients for s, rid in c.answered}
    ok = {rid for rid, s in answered.items() if s == 200}
    records = AuditLog(db).records()
    ids = {r.request_id for r in records}
    lost_records = len(ok - ids)
    orphans = sum(1 for r in records if r.request_id not in answered)
    verify = subprocess.run(
        [sys.executable, "-m", "bastion", "log", "verify", "--db", db],
        capture_output=True,
        text=True,
        env=child_env(),
    )
    print(f"\n### Durability (kill -9 under load from {args.durability_clients} client threads, SQLite)\n")
    print(
        markdown(
            ["kills", "wall s", "answered 200", "200 without record", "lost in flight", "records of those",
             "records", "log verify"],
            [[args.kills, f"{wall:.0f}", len(ok), lost_records, sum(c.lost for c in clients), orphans,
              len(records), "ok" if verify.returncode == 0 else f"FAILED: {verify.stderr.strip()}"]],
        )
    )  # fmt: skip


# -- limits -----------------------------------------------------------------------------------------


def redis_ok() -> bool:
    try:
        import redis

        redis.Redis.from_url(REDIS, socket_connect_timeout=1).ping()
        return True
    except Exception:
        return False


def section_limits(args: argparse.Namespace, workdir: Path) -> None:
    import httpx
    import redis

    if not redis_ok():
        print(f"\n### Limits: skipped (no Redis at {REDIS})\n")
        return
    db = f"sqlite:///{workdir / 'limits.db'}"
    rate = args.rate
    key_id, token = make_key(db, "limited", rate=rate, burst=int(rate), daily_quota=None)
    servers = [gateway_server(workdir, db, REDIS).spawn() for _ in range(2)]
    body = predict_body(digits_rows()[:1])
    results: list[tuple[float, int]] = []
    try:
        for s in servers:
            s.wait_ready()
        start = time.monotonic()
        until = start + args.seconds

        def hammer(url: str) -> None:
            with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=30.0) as c:
                while (now := time.monotonic()) < until:
                    results.append((now - start, c.post("/v1/predict", json=body).status_code))

        threads = [threading.Thread(target=hammer, args=(s.url,)) for s in servers for _ in range(2)]
        for t in threads:
            t.start()
        for t in threads:
            t.join()
    finally:
        for s in servers:
            s.stop()
        redis.Redis.from_url(REDIS).delete(f"bastion:bucket:{key_id}", f"bastion:quota:{key_id}")
    per_second = Counter(int(t) for t, s in results if s == 200)
    seconds = int(args.seconds)
    counts = [per_second.get(i, 0) for i in range(seconds)]
    steady = counts[1:]
    outside = sum(1 for c in steady if abs(c - rate) > 1)
    allowed = sum(counts)
    elapsed = max(t for t, _ in results) - min(t for t, _ in results)
    print(f"\n### Limits (2 gateway processes on Redis, key at {rate:g}/s burst {int(rate)}, {seconds} s)\n")
    headers = ["requests", "allowed", "burst + R x t", "second 0 (burst)"]
    headers += ["per second after (min / mean / max)", "seconds outside R +- 1"]
    spread = f"{min(steady)} / {statistics.mean(steady):.2f} / {max(steady)}"
    cells = [len(results), allowed, f"{rate + rate * elapsed:.1f}", counts[0], spread]
    print(markdown(headers, [[*cells, f"{outside} of {len(steady)}"]]))
    print(f"\nper-second allowed counts: {counts}")


# -- detection --------------------------------------------------------------------------------------


class Rotating:
    """A sybil victim: each request-sized chunk (``rows``) goes through the next of several keys."""

    def __init__(self, victims: list[Any], rows: int = 16) -> None:
        self.victims, self.rows, self.i = victims, rows, 0
        self.bounds, self.num_classes = victims[0].bounds, victims[0].num_classes

    def __call__(self, x: torch.Tensor) -> torch.Tensor:
        out = []
        for chunk in x.split(self.rows):
            out.append(self.victims[self.i % len(self.victims)](chunk))
            self.i += 1
        return torch.cat(out)


def remote(url: str, token: str) -> Any:
    from bastion.remote import load_remote

    os.environ["BASTION_API_KEY"] = token  # how load_remote finds the key, as a user would pass it
    try:
        return load_remote(f"oip:{url}/models/{SERVED}?outputs=probabilities&max_rps=none&batch_size=16")
    finally:
        del os.environ["BASTION_API_KEY"]


def first_flags(log: Any, key_ids: list[str]) -> tuple[dict[str, int], int]:
    """Per detector, the rows the keys had sent (together, in time order) at its first flag; total rows."""
    records = sorted((r for k in key_ids for r in log.records(key_id=k)), key=lambda r: r.time)
    sent, first = 0, {}
    for r in records:
        sent += r.rows
        for flag in r.flags:
            first.setdefault(flag.split(":")[0], sent)
    return first, sent


def section_detection(args: argparse.Namespace, workdir: Path) -> None:
    from bastion.attacks import get
    from bastion.attacks.extraction import CloneTraining, JacobianAugmentation, KnockoffNets
    from bastion.data import load_dataset
    from bastion.serve.audit_log import AuditLog
    from bastion.threat import ThreatModel

    db = f"sqlite:///{workdir / 'detection.db'}"
    unlimited_key(db, "setup")
    server = script_server("--detect-server", workdir, db).start()
    tiny = CloneTraining(steps=20)  # the clones do not matter here, only the queries they cost
    test = load_dataset("digits", split="test")
    train = digits_rows("train")
    pool = None
    if FASHION.exists():
        import torch.nn.functional as F

        fx = load_dataset(f"fashion-mnist:{FASHION}", split="test").x[: args.pool]
        fx = F.adaptive_avg_pool2d(fx, 8)  # a natural pool for 8x8 digits: clothes shrunk, rescaled
        pool = fx / fx.amax(dim=(1, 2, 3), keepdim=True).clamp_min(1e-6)
    x1, y1 = test.x[:1], test.y[:1]
    attacks: list[tuple[str, str, Callable[[Any], Any]]] = [
        (
            "Jacobian augmentation (50 seeds)",
            "prada",
            lambda v: JacobianAugmentation("labels", seed_size=50, budgets=(), training=tiny).run(
                v, test.x, 500
            ),
        ),
        (
            "Jacobian augmentation (150 seeds, default)",
            "prada",
            lambda v: JacobianAugmentation("labels", budgets=(), training=tiny).run(v, test.x, 500),
        ),
        (
            "HopSkipJump (1 image)",
            "stateful",
            lambda v: get("hopskipjump", max_queries=400)(v, x1, y1, ThreatModel("l2", math.inf)),
        ),
        (
            "Square linf 0.05 (1 image)",
            "stateful",
            lambda v: get("square", n_queries=300)(v, x1, y1, ThreatModel("linf", 0.05)),
        ),
    ]
    if pool is not None:
        attacks.insert(
            2,
            (
                "Knockoff (Fashion-MNIST pool)",
                "ood",
                lambda v: KnockoffNets("random", "probs", budgets=(), training=tiny).run(v, pool, 500),
            ),
        )
    evasions: list[tuple[str, str, Callable[[Any], Any], int]] = [
        (
            f"Square over {args.sybils} keys",
            "stateful",
            lambda v: get("square", n_queries=300)(v, x1, y1, ThreatModel("linf", 0.05)),
            args.sybils,
        ),
        (
            f"Jacobian (50 seeds) over {args.sybils} keys",
            "prada",
            lambda v: JacobianAugmentation("labels", seed_size=50, budgets=(), training=tiny).run(
                v, test.x, 500
            ),
            args.sybils,
        ),
        (
            "Knockoff, in-distribution pool (digits train)",
            "ood",
            lambda v: KnockoffNets("random", "probs", budgets=(), training=tiny).run(v, train, 500),
            1,
        ),
    ]
    log = AuditLog(db)
    rows = []
    try:
        for i, (name, target, attack) in enumerate(attacks):
            key_id, token = unlimited_key(db, f"attack-{i}", output="probs")
            t = time.perf_counter()
            attack(remote(server.url, token))
            first, sent = first_flags(log, [key_id])
            rows.append(row(name, target, first, sent, time.perf_counter() - t, 1))
        for i, (name, target, attack, keys) in enumerate(evasions):
            made = [unlimited_key(db, f"evade-{i}-{k}", output="probs") for k in range(keys)]
            t = time.perf_counter()
            attack(Rotating([remote(server.url, tok) for _, tok in made]))
            first, sent = first_flags(log, [k for k, _ in made])
            rows.append(row(name, target, first, sent, time.perf_counter() - t, keys))
        benign = benign_traffic(args, server.url, db, test.x, log)
        metrics = flag_metrics(server.url)
    finally:
        server.stop()
    print("\n### Detection through the gateway (digits-cnn, on_detection=log, requests of <= 16 rows)\n")
    print(
        markdown(
            [
                "attack",
                "keys",
                "aimed at",
                "rows sent",
                "first flag (rows): prada / stateful / ood",
                "caught",
                "wall s",
            ],
            rows,
        )
    )
    print()
    print(
        markdown(
            ["benign keys", "rows", "rows per request", "flagged keys", "flags (prada / stateful / ood)"],
            [benign],
        )
    )
    print(f"\n/metrics bastion_gateway_detector_flags_total: {metrics}")
    if pool is None:
        print(f"\n(Knockoff with a natural pool skipped: no Fashion-MNIST at {FASHION})")


def row(name: str, target: str, first: dict[str, int], sent: int, wall: float, keys: int) -> list[Any]:
    cells = " / ".join(str(first.get(d, "-")) for d in ("prada", "stateful", "ood"))
    caught = f"yes, after {first[target]}" if target in first else "no"
    return [name, keys, target, sent, cells, caught, f"{wall:.0f}"]


def benign_traffic(args: argparse.Namespace, url: str, db: str, x: torch.Tensor, log: Any) -> list[Any]:
    import httpx

    keys = [unlimited_key(db, f"benign-{k}", output="probs") for k in range(args.benign_keys)]
    per_request = args.benign_rows

    def user(k: int, token: str) -> None:
        order = torch.randperm(len(x), generator=torch.Generator().manual_seed(1000 + k))
        with httpx.Client(base_url=url, headers={"X-API-Key": token}, timeout=60.0) as c:
            for i in range(0, len(order), per_request):
                r = c.post("/v1/predict", json=predict_body(x[order[i : i + per_request]]))
                r.raise_for_status()

    threads = [threading.Thread(target=user, args=(k, tok)) for k, (_, tok) in enumerate(keys)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    flags: Counter[str] = Counter()
    flagged, rows = 0, 0
    for key_id, _ in keys:
        records = log.records(key_id=key_id)
        rows += sum(r.rows for r in records)
        these = [f.split(":")[0] for r in records for f in r.flags]
        flagged += bool(these)
        flags.update(these)
    return [
        len(keys),
        rows,
        per_request,
        flagged,
        " / ".join(str(flags[d]) for d in ("prada", "stateful", "ood")),
    ]


def flag_metrics(url: str) -> dict[str, float]:
    import httpx

    out = {}
    for line in httpx.get(f"{url}/metrics").text.splitlines():
        if line.startswith("bastion_gateway_detector_flags_total{"):
            name = line.split('detector="')[1].split('"')[0]
            out[name] = float(line.rsplit(" ", 1)[1])
    return out


# -- main -------------------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sections", default=",".join(SECTIONS), help=f"comma list of {', '.join(SECTIONS)}")
    ap.add_argument("--quick", action="store_true", help="small counts everywhere (a smoke run)")
    ap.add_argument("--requests", type=int, default=None, help="requests per overhead row (default 1000)")
    ap.add_argument("--clients", type=int, default=50, help="concurrent clients of the loaded rows")
    ap.add_argument("--batches", default="1,16", help="batch sizes of the overhead rows")
    ap.add_argument("--kills", type=int, default=None, help="kill -9 count (default 10)")
    ap.add_argument("--durability-clients", type=int, default=4)
    ap.add_argument("--rate", type=float, default=10.0, help="the limited key's requests per second")
    ap.add_argument("--seconds", type=float, default=None, help="limits run length (default 30)")
    ap.add_argument("--sybils", type=int, default=40, help="keys an evading attacker spreads over")
    ap.add_argument("--pool", type=int, default=1000, help="Fashion-MNIST images in Knockoff's pool")
    ap.add_argument("--benign-keys", type=int, default=None, help="benign keys (default 23 x 450 rows)")
    ap.add_argument("--benign-rows", type=int, default=16, help="rows per benign request")
    ap.add_argument("--workdir", type=Path, default=None, help="keep databases and logs here")
    args = ap.parse_args(argv)
    quick = args.quick
    args.requests = args.requests or (200 if quick else 1000)
    args.kills = args.kills if args.kills is not None else (2 if quick else 10)
    args.seconds = args.seconds or (6.0 if quick else 30.0)
    args.benign_keys = args.benign_keys or (3 if quick else 23)
    args.batches = [int(b) for b in args.batches.split(",")]
    args.sections = [s.strip() for s in args.sections.split(",") if s.strip()]
    unknown = set(args.sections) - set(SECTIONS)
    if unknown:
        ap.error(f"unknown section {sorted(unknown)[0]!r}; choose from {', '.join(SECTIONS)}")
    return args


def main(argv: list[str]) -> None:
    if argv[:1] == ["--loadgen"]:
        return loadgen_main(argv[1])
    if argv[:1] == ["--bare-server"]:
        return bare_server_main(argv[1])
    if argv[:1] == ["--detect-server"]:
        return detect_server_main(argv[1], argv[2])
    args = parse_args(argv)
    torch.set_num_threads(1)
    print(f"# bench_serve ({'quick' if args.quick else 'full'}): {environment()}, {os.cpu_count()} cores")
    print(f"load average at start: {os.getloadavg()[0]:.1f} (other work shares these cores)")
    sections: dict[str, Callable[[argparse.Namespace, Path], None]] = {
        "overhead": section_overhead,
        "durability": section_durability,
        "limits": section_limits,
        "detection": section_detection,
    }
    with tempfile.TemporaryDirectory(prefix="bench-serve-") as tmp:
        workdir = args.workdir or Path(tmp)
        workdir.mkdir(parents=True, exist_ok=True)
        for name in args.sections:
            t = time.perf_counter()
            sections[name](args, workdir)
            print(f"\n({name}: {time.perf_counter() - t:.0f} s, load average {os.getloadavg()[0]:.1f})")


if __name__ == "__main__":
    main(sys.argv[1:])
