"""The reference proxies' routing table: BENCH_ROUTES="modalidad=url,..." (set by bench/run.py)."""

import os


def routes_from_env() -> dict[str, str]:
    pairs = (item.split("=", 1) for item in os.environ.get("BENCH_ROUTES", "").split(",") if item)
    return {name.strip().lower(): url for name, url in pairs}
