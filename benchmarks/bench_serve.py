"""Load test for `vrfer serve` on loopback: HTTP POST /predict and WebSocket frames at a set rate.

    python benchmarks/bench_serve.py                          # 60 s at 200 predictions/s, half HTTP, half WS
    python benchmarks/bench_serve.py --duration 10            # a short run
    python benchmarks/bench_serve.py --mode ws --rate 100 --ws-clients 8
    python benchmarks/bench_serve.py --url http://127.0.0.1:8765 --token T   # an already running server

Without --url it starts `vrfer serve` in its own process on a free loopback port (--model, default
vrfer-lower; while no such bundled model exists, a fresh vrfer-cnn-small with the same input) and stops
it at the end. The load is open-loop: each client has its own schedule (rate / clients per second) and
sends on time whether or not the server keeps up, with at most one request in flight per client (a
WebSocket client waits for its frame's event). Latency is "service" (send -> answer) and "from
schedule" (planned send time -> answer, so time spent waiting on a slow server counts too). Bounded:
--duration seconds and --max-requests per client; every request has a 10 s timeout.

Target on the 2-core dev machine: 200 predictions/s for 60 s, 0 errors, p99 < 50 ms.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import socket
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np

SHARED = Path(os.environ.get("VRFER_SHARED", Path(__file__).resolve().parents[1].parent / "shared"))
TIMEOUT = 10.0


def face_jpeg(path: str | None) -> tuple[bytes, str]:
    if path:
        return Path(path).read_bytes(), path
    files = sorted((SHARED / "data" / "faces-dev" / "images").glob("*.jpg"))
    if files:
        return files[0].read_bytes(), f"faces-dev/{files[0].name}"
    import io

    from PIL import Image
    files = sorted((SHARED / "data" / "ferplus" / "FER2013Test").glob("*.png"))
    buf = io.BytesIO()
    if files:
        Image.open(files[0]).convert("L").resize((192, 192)).save(buf, format="JPEG", quality=85)
        return buf.getvalue(), f"FER+ {files[0].name} (upscaled)"
    Image.fromarray(np.random.default_rng(0).integers(0, 255, (192, 192), dtype=np.uint8)).save(buf, format="JPEG")
    return buf.getvalue(), "random 192x192 image"


class Recorder:
    def __init__(self):
        self.service: list[float] = []
        self.lagged: list[float] = []
        self.errors: dict[str, int] = {}
        self.late = 0

    def ok(self, planned: float, sent: float, done: float) -> None:
        self.service.append((done - sent) * 1000)
        self.lagged.append((done - planned) * 1000)

    def error(self, kind: str) -> None:
        self.errors[kind] = self.errors.get(kind, 0) + 1


def pct(values: list[float], q: float) -> float:
    if not values:
        return float("nan")
    v = sorted(values)
    return v[min(len(v) - 1, int(round(q / 100 * (len(v) - 1))))]


def schedule(start: float, rate: float, offset: float, duration: float, max_requests: int):
    k = 0
    while k < max_requests:
        t = start + offset + k / rate
        if t - start >= duration:
            return
        yield t
        k += 1


async def paced(start, rate, offset, args, rec: Recorder):
    """Wait for each of a client's planned send times (counting those missed by over 10 ms in rec.late)
    -> (planned, sent)."""
    for planned in schedule(start, rate, offset, args.duration, args.max_requests):
        delay = planned - time.perf_counter()
        if delay > 0:
            await asyncio.sleep(delay)
        elif delay < -0.010:
            rec.late += 1
        yield planned, time.perf_counter()


async def http_client(url, data, token, rate, offset, start, args, rec: Recorder):
    import httpx
    headers = {"Content-Type": "image/jpeg"}
    if token:
        headers["Authorization"] = f"Bearer {token}"
    async with httpx.AsyncClient(timeout=TIMEOUT, limits=httpx.Limits(max_connections=1)) as http:
        async for planned, sent in paced(start, rate, offset, args, rec):
            try:
                r = await http.post(url + "/predict", content=data, headers=headers)
                if r.status_code != 200:
                    rec.error(f"http {r.status_code}")
                    continue
                ev = r.json()
                if ev.get("type") != "prediction" or not ev.get("faces"):
                    rec.error("no face" if ev.get("type") == "prediction" else "bad answer")
                    continue
            except Exception as e:  # noqa: BLE001  (a load test counts every failure)
                rec.error(type(e).__name__)
                continue
            rec.ok(planned, sent, time.perf_counter())


async def ws_client(url, data, token, rate, offset, start, args, rec: Recorder, drops: list):
    from websockets.asyncio.client import connect
    wsurl = url.replace("http", "ws", 1) + "/ws" + (f"?token={token}" if token else "")
    try:
        async with connect(wsurl, open_timeout=TIMEOUT, max_size=None, compression=None) as ws:
            hello = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
            assert hello["type"] == "hello", hello
            frame = 0
            async for planned, sent in paced(start, rate, offset, args, rec):
                await ws.send(data)
                frame += 1
                try:
                    while True:
                        ev = json.loads(await asyncio.wait_for(ws.recv(), TIMEOUT))
                        if ev["type"] == "error":
                            rec.error(f"ws {ev['code']}")
                            break
                        if ev["type"] == "prediction" and ev["frame"] == frame:
                            if ev.get("faces"):
                                rec.ok(planned, sent, time.perf_counter())
                            else:
                                rec.error("no face")
                            drops.append(ev.get("dropped", 0))
                            break
                except asyncio.TimeoutError:
                    rec.error("ws timeout")
                    return
    except Exception as e:  # noqa: BLE001
        rec.error(f"ws {type(e).__name__}")


def proc_cpu(proc) -> float | None:
    """User + system CPU seconds of a started server process (Linux /proc), else None."""
    if proc is None:
        return None
    try:
        fields = Path(f"/proc/{proc.pid}/stat").read_text().rsplit(")", 1)[1].split()
        return (int(fields[11]) + int(fields[12])) / os.sysconf("SC_CLK_TCK")
    except (OSError, IndexError, ValueError):
        return None


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_server(model: str, face: str, token: str | None) -> tuple[subprocess.Popen, str, str, str | None]:
    import httpx
    tmp = None
    from vrfer.models.registry import get_config
    try:
        get_config(model) if not Path(model).exists() else None
        note = model
    except Exception:  # noqa: BLE001  (vrfer-lower not bundled yet)
        from vrfer.models import create_model, save_model
        tmp = tempfile.mkdtemp(prefix="bench_serve_")
        path = Path(tmp) / "vrfer-cnn-small-visible-half.safetensors"
        save_model(create_model("vrfer-cnn-small", pretrained=False, input_mode="visible-half"), path)
        note = f"{model} not available: a fresh vrfer-cnn-small (visible-half), same compute, random weights"
        model = str(path)
    port = free_port()
    env = dict(os.environ)
    if token:
        env["VRFER_TOKEN"] = token
    proc = subprocess.Popen([sys.executable, "-m", "vrfer", "serve", "--port", str(port), "--model", model,
                             "--face", face, "--log-level", "warning", "--max-connections", "256"],
                            stdout=subprocess.DEVNULL, stderr=subprocess.PIPE, env=env, text=True)
    url = f"http://127.0.0.1:{port}"
    end = time.monotonic() + 120
    while True:
        try:
            if httpx.get(url + "/health", timeout=2).status_code == 200:
                return proc, url, note, tmp
        except httpx.TransportError:
            pass
        if proc.poll() is not None:
            raise SystemExit(f"server failed to start: {proc.stderr.read()[-2000:]}")
        if time.monotonic() > end:
            proc.terminate()
            raise SystemExit("server did not start within 120 s")
        time.sleep(0.3)


def report(name: str, rec: Recorder, seconds: float) -> dict:
    n = len(rec.service)
    errs = sum(rec.errors.values())
    row = {"mode": name, "ok": n, "errors": errs, "throughput": n / seconds if seconds else 0.0,
           "p50": pct(rec.service, 50), "p99": pct(rec.service, 99), "max": max(rec.service, default=float("nan")),
           "sched_p50": pct(rec.lagged, 50), "sched_p99": pct(rec.lagged, 99), "late": rec.late,
           "error_kinds": dict(rec.errors)}
    print(f"{name:>6} {n:>7} {errs:>6} {row['throughput']:>9.1f} {row['p50']:>8.1f} {row['p99']:>8.1f} "
          f"{row['max']:>8.1f} {row['sched_p50']:>9.1f} {row['sched_p99']:>9.1f} {rec.late:>6}"
          + (f"   {rec.errors}" if rec.errors else ""))
    return row


async def run(args, url: str, data: bytes) -> tuple[dict, float, int]:
    modes = ["http", "ws"] if args.mode == "both" else [args.mode]
    per_mode = args.rate / len(modes)
    recs = {m: Recorder() for m in modes}
    drops: list[int] = []
    start = time.perf_counter() + 1.0
    tasks = []
    for m in modes:
        n = args.http_clients if m == "http" else args.ws_clients
        rate = per_mode / n
        for i in range(n):
            offset = i / (per_mode)             # spread the clients' send times evenly
            if m == "http":
                tasks.append(http_client(url, data, args.token, rate, offset, start, args, recs[m]))
            else:
                tasks.append(ws_client(url, data, args.token, rate, offset, start, args, recs[m], drops))
    await asyncio.wait_for(asyncio.gather(*tasks), args.duration + 3 * TIMEOUT + 5)
    return recs, time.perf_counter() - start, (max(drops) if drops else 0)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    p.add_argument("--url", help="an already running server (default: start one)")
    p.add_argument("--token", default=os.environ.get("VRFER_TOKEN"))
    p.add_argument("--model", default="vrfer-lower")
    p.add_argument("--face", default="none", help="the started server's --face (default none)")
    p.add_argument("--image", help="JPEG/PNG to send (default a faces-dev photo)")
    p.add_argument("--duration", type=float, default=60.0, help="seconds of load (default 60)")
    p.add_argument("--rate", type=float, default=200.0, help="target predictions/s, all clients (default 200)")
    p.add_argument("--mode", choices=["both", "http", "ws"], default="both")
    p.add_argument("--http-clients", type=int, default=4)
    p.add_argument("--ws-clients", type=int, default=4)
    p.add_argument("--max-requests", type=int, default=100_000, help="cap per client (default 100000)")
    p.add_argument("--json", help="also write the results here")
    args = p.parse_args(argv)
    if not 0 < args.duration <= 3600 or args.rate <= 0 or args.http_clients < 1 or args.ws_clients < 1:
        p.error("--duration in (0, 3600], --rate > 0, at least one client per mode")

    data, what = face_jpeg(args.image)
    proc = tmp = None
    if args.url:
        url, note = args.url.rstrip("/"), "(external server)"
    else:
        proc, url, note, tmp = start_server(args.model, args.face, args.token)
    try:
        import httpx
        headers = {"Authorization": f"Bearer {args.token}"} if args.token else {}
        info = httpx.get(url + "/model", headers=headers, timeout=10).json()
        load = os.getloadavg()
        print(f"server {url}  model {info.get('name')}  [{note}]")
        print(f"image {what} ({len(data)} bytes); {args.mode} at {args.rate:g}/s for {args.duration:g} s; "
              f"load average {load[0]:.2f} on {os.cpu_count()} CPUs before the run")
        for _ in range(5):   # warm up
            httpx.post(url + "/predict", content=data, headers=headers, timeout=TIMEOUT)
        cpu0, client0 = proc_cpu(proc), time.process_time()
        recs, seconds, ws_drops = asyncio.run(run(args, url, data))
        cpu1, client1 = proc_cpu(proc), time.process_time()
        print(f"\n{'mode':>6} {'ok':>7} {'errors':>6} {'pred/s':>9} {'p50 ms':>8} {'p99 ms':>8} {'max ms':>8} "
              f"{'sched p50':>9} {'sched p99':>9} {'late':>6}")
        rows = [report(m, r, seconds) for m, r in recs.items()]
        total = Recorder()
        for r in recs.values():
            total.service += r.service
            total.lagged += r.lagged
            total.late += r.late
            for k, v in r.errors.items():
                total.errors[k] = total.errors.get(k, 0) + v
        rows.append(report("total", total, seconds))
        stats = httpx.get(url + "/stats", headers=headers, timeout=10).json()
        print(f"\nserver: frames dropped {stats['frames_dropped']} (WebSocket clients saw {ws_drops}), "
              f"engine max queue {stats['engine']['max_queue']}, busy refusals {stats['engine']['busy']}, "
              f"errors {stats['errors']}; load average {os.getloadavg()[0]:.2f} after")
        n = max(1, len(total.service))
        if cpu0 is not None:
            print(f"CPU: server {cpu1 - cpu0:.1f} s ({(cpu1 - cpu0) / n * 1000:.2f} ms per prediction), "
                  f"this load generator {client1 - client0:.1f} s, over {seconds:.1f} s on {os.cpu_count()} CPUs")
        t = rows[-1]
        passed = t["throughput"] >= 0.98 * args.rate and t["errors"] == 0 and t["p99"] < 50
        print(f"target {args.rate:g} pred/s, 0 errors, p99 < 50 ms: {'MET' if passed else 'NOT MET'} "
              f"({t['throughput']:.1f} pred/s, {t['errors']} errors, p99 {t['p99']:.1f} ms)")
        if args.json:
            Path(args.json).write_text(json.dumps({"rows": rows, "server": stats, "seconds": seconds}, indent=1))
        return 0 if t["errors"] == 0 else 1
    finally:
        if proc is not None:
            proc.terminate()
            try:
                proc.wait(15)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait()
        if tmp:
            import shutil
            shutil.rmtree(tmp, ignore_errors=True)


if __name__ == "__main__":
    sys.exit(main())
