"""How many sessions change endpoint when an agent pool gains or loses one (session affinity,
runtime/balancer.py's ring of virtual nodes):

    python -m bench.affinity_moves [--sessions N]

For n = 2..8 endpoints of weight 1 it hashes N session ids (1..N) to their home endpoint, then
adds an endpoint (n + 1) and removes one (each in turn, averaged), and prints the share of the
sessions whose home changed, next to the ideal of consistent hashing: 1/(n + 1) on adding (the
newcomer's share, and nothing else moves), 1/n on removing (the removed one's sessions only).
"""

import argparse
import os
from typing import Any

import django


def _pool(urls: list[str]) -> Any:
    from runtime.balancer import AFFINITY_SESSION, Balancer, Endpoint  # once Django is set up

    return Balancer([Endpoint(i, url) for i, url in enumerate(urls)], affinity=AFFINITY_SESSION)


def _homes(balancer: Any, sessions: range) -> list[str]:
    return [balancer.home(s).url for s in sessions]


def moved_shares(n: int, sessions: range) -> tuple[float, float]:
    """(share moved when an endpoint is added to n, mean share moved when one of n is removed)."""
    urls = [f"http://10.0.0.{i}:8000/chat" for i in range(1, n + 2)]
    before = _homes(_pool(urls[:n]), sessions)
    added = _homes(_pool(urls), sessions)
    add = sum(a != b for a, b in zip(before, added, strict=True)) / len(sessions)
    removes = []
    for gone in range(n):
        after = _homes(_pool(urls[:gone] + urls[gone + 1 : n]), sessions)
        removes.append(sum(a != b for a, b in zip(before, after, strict=True)) / len(sessions))
    return add, sum(removes) / n


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--sessions", type=int, default=100_000)
    sessions = range(1, parser.parse_args().sessions + 1)
    os.environ.setdefault("DJANGO_SETTINGS_MODULE", "gateway_project.settings")
    django.setup()
    print("| endpoints n | moved adding one | ideal 1/(n+1) | moved removing one | ideal 1/n |")
    print("|---:|---:|---:|---:|---:|")
    for n in range(2, 9):
        add, remove = moved_shares(n, sessions)
        print(f"| {n} | {add:.1%} | {1 / (n + 1):.1%} | {remove:.1%} | {1 / n:.1%} |")


if __name__ == "__main__":
    main()
