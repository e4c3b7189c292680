"""Throughput of `lndeploy serve` with and without dynamic batching (the table in docs/serving.md).

    python benchmarks/serve_load.py out/transformer.onnx --shape 1x16x128 --clients 8 --requests 200

Starts the artifact twice in turn in the serve environment (make serve-env), sends the same load to each
(every answer checked bit for bit against the sequential one) and prints one markdown row per setting.
"""

from __future__ import annotations

import argparse
import json
import os
import time

import numpy as np


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("artifact")
    parser.add_argument("--shape", default="1x16x128", help="the one input's shape, e.g. 1x16x128")
    parser.add_argument("--clients", type=int, default=8)
    parser.add_argument("--requests", type=int, default=200, help="per client")
    parser.add_argument("--max-batch", type=int, default=8)
    parser.add_argument("--instances", type=int, default=1)
    parser.add_argument("--json", help="write the results here")
    args = parser.parse_args()
    from lndeploy import Session
    from lndeploy.serving.load import compare_batching

    name = Session(args.artifact).input_names[0]
    shape = tuple(int(n) for n in args.shape.split("x"))
    rng = np.random.default_rng(0)
    feeds = [{name: rng.standard_normal(shape).astype(np.float32)} for _ in range(8)]
    load_before = os.getloadavg()[0]
    results = compare_batching(args.artifact, feeds, clients=args.clients, requests_per_client=args.requests,
                               max_batch=args.max_batch, instances=args.instances)
    print(f"1-min load average before: {load_before:.2f}, after: {os.getloadavg()[0]:.2f}; "
          f"{time.strftime('%Y-%m-%d')}")
    print("| batching | clients x requests | input | req/s | p50 ms | p99 ms | failed | differ from sequential |")
    print("|---|---|---|---:|---:|---:|---:|---:|")
    for label, r in results.items():
        print(f"| {label} | {args.clients} x {args.requests} | {args.shape} | {r.rps:.0f} | {r.percentile_ms(50):.1f} | "
              f"{r.percentile_ms(99):.1f} | {r.failures} | {r.mismatches} |")
    if args.json:
        with open(args.json, "w") as handle:
            json.dump({k: r.to_dict() for k, r in results.items()}, handle, indent=2)


if __name__ == "__main__":
    main()
