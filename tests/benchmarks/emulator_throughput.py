"""How fast is the Stripe emulator? Invoice retrieves per second through stripe-python.

Run: ``.venv/bin/python -m tests.benchmarks.emulator_throughput [--seconds 3]``

Starts the emulator as a subprocess (as the test fixture does), creates invoices with lines,
then retrieves them from 1..N threads, each thread with its own ``StripeClient`` (requests
session = one kept-alive connection per thread), and once more opening a new connection per
request. Prints requests/second; benchmarks know the emulator is the bottleneck when they get
near these figures.
"""

from __future__ import annotations

import argparse
import http.client
import tempfile
import threading
import time
from pathlib import Path
from urllib.parse import urlsplit

from tests.stripe_emulator.handle import EmulatorHandle
from tests.stripe_emulator.pytest_plugin import start_emulator, stop_emulator


def _setup(handle: EmulatorHandle, key: str, count: int) -> list[str]:
    client = handle.client(key)
    customer = client.v1.customers.create(params={"email": "bench@example.com"})
    ids = []
    for index in range(count):
        invoice = client.v1.invoices.create(
            params={
                "customer": customer.id,
                "collection_method": "send_invoice",
                "days_until_due": 30,
            }
        )
        client.v1.invoices.add_lines(
            invoice.id,
            params={"lines": [{"amount": 1000 + n, "description": f"line {n}"} for n in range(3)]},
        )
        ids.append(client.v1.invoices.finalize_invoice(invoice.id).id if index % 2 else invoice.id)
    return ids


def _run_clients(
    handle: EmulatorHandle, key: str, ids: list[str], threads: int, seconds: float
) -> float:
    counts = [0] * threads
    stop = threading.Event()
    barrier = threading.Barrier(threads + 1)

    def worker(slot: int) -> None:
        client = handle.client(key)
        client.v1.invoices.retrieve(ids[0])  # open the connection before timing
        barrier.wait()
        index = slot
        while not stop.is_set():
            client.v1.invoices.retrieve(ids[index % len(ids)])
            counts[slot] += 1
            index += threads

    pool = [threading.Thread(target=worker, args=(slot,)) for slot in range(threads)]
    for thread in pool:
        thread.start()
    barrier.wait()
    started = time.perf_counter()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _run_raw_keep_alive(
    handle: EmulatorHandle, key: str, ids: list[str], threads: int, seconds: float
) -> float:
    """The server's own capacity: plain http.client on kept-alive connections (no JSON decode)."""
    host = urlsplit(handle.base_url)
    counts = [0] * threads
    stop = threading.Event()

    def worker(slot: int) -> None:
        connection = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=10)
        index = slot
        while not stop.is_set():
            connection.request(
                "GET",
                f"/v1/invoices/{ids[index % len(ids)]}",
                headers={"Authorization": f"Bearer {key}"},
            )
            response = connection.getresponse()
            response.read()
            counts[slot] += 1
            index += threads
        connection.close()

    pool = [threading.Thread(target=worker, args=(slot,)) for slot in range(threads)]
    started = time.perf_counter()
    for thread in pool:
        thread.start()
    time.sleep(seconds)
    stop.set()
    for thread in pool:
        thread.join()
    return sum(counts) / (time.perf_counter() - started)


def _run_new_connections(handle: EmulatorHandle, key: str, ids: list[str], seconds: float) -> float:
    host = urlsplit(handle.base_url)
    count = 0
    deadline = time.perf_counter() + seconds
    started = time.perf_counter()
    while time.perf_counter() < deadline:
        connection = http.client.HTTPConnection(host.hostname or "127.0.0.1", host.port, timeout=10)
        connection.request(
            "GET",
            f"/v1/invoices/{ids[count % len(ids)]}",
            headers={"Authorization": f"Bearer {key}", "Connection": "close"},
        )
        response = connection.getresponse()
        response.read()
        connection.close()
        assert response.status == 200
        count += 1
    return count / (time.perf_counter() - started)


def main() -> None:
    parser = argparse.ArgumentParser()
    parser.add_argument("--seconds", type=float, default=3.0)
    parser.add_argument("--invoices", type=int, default=200)
    parser.add_argument("--threads", default="1,2,4,8,16")
    args = parser.parse_args()
    with tempfile.TemporaryDirectory() as tmp:
        process, handle = start_emulator(Path(tmp) / "emulator.log")
        try:
            key = handle.new_secret_key()
            # This measures the emulator's own capacity: its sandbox limit (25/s) goes off.
            handle.configure(key, rate_limit=None)
            started = time.perf_counter()
            ids = _setup(handle, key, args.invoices)
            setup_seconds = time.perf_counter() - started
            print(
                f"setup: {args.invoices} invoices x (create, add_lines[, finalize]) "
                f"in {setup_seconds:.2f}s = {args.invoices * 2.5 / setup_seconds:.0f} writes/s "
                "(1 thread)"
            )
            for threads in (int(n) for n in args.threads.split(",")):
                rate = _run_clients(handle, key, ids, threads, args.seconds)
                print(f"StripeClient, keep-alive,    {threads:2d} threads: {rate:7.0f} retrieves/s")
            for threads in (1, 4):
                rate = _run_raw_keep_alive(handle, key, ids, threads, args.seconds)
                print(f"raw http.client, keep-alive, {threads:2d} threads: {rate:7.0f} retrieves/s")
            rate = _run_new_connections(handle, key, ids, args.seconds)
            print(f"raw http.client, new connection per request, 1 thread: {rate:7.0f} retrieves/s")
        finally:
            stop_emulator(process)


if __name__ == "__main__":
    main()
