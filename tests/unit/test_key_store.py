"""The in-memory key store: lookup by digest, revocation, batched last-used writes."""

from access.keys import LAST_USED_WRITE_INTERVAL_S, KeyEntry, KeyStore, key_digest


def entry(key_id: int = 1, enabled: bool = True) -> KeyEntry:
    return KeyEntry(
        id=key_id, name=f"k{key_id}", enabled=enabled, allowed_agents=None, requests_per_minute=None
    )


def test_lookup_finds_enabled_keys_by_digest_only() -> None:
    store = KeyStore()
    store.apply(1, [(key_digest("gk_one"), entry(1)), (key_digest("gk_off"), entry(2, False))])
    assert store.lookup(key_digest("gk_one")) == entry(1)
    assert store.lookup(key_digest("gk_off")) is None
    assert store.lookup(key_digest("gk_two")) is None
    assert store.configured


def test_an_older_version_never_replaces_a_newer_one() -> None:
    store = KeyStore()
    store.apply(5, [(key_digest("new"), entry(1))])
    store.apply(4, [])
    assert store.lookup(key_digest("new")) is not None and store.version == 5


def test_uses_are_written_at_most_once_per_interval_per_key() -> None:
    store = KeyStore()
    for _ in range(100):
        store.mark_used(entry(1))
    store.mark_used(entry(2))
    first = store.take_due_uses(now=1000.0)
    assert sorted(first) == [1, 2]
    store.mark_used(entry(1))
    assert store.take_due_uses(now=1000.0 + LAST_USED_WRITE_INTERVAL_S - 1) == {}
    assert list(store.take_due_uses(now=1000.0 + LAST_USED_WRITE_INTERVAL_S)) == [1]
    assert store.take_due_uses(now=5000.0) == {}  # nothing used since


def test_an_entry_is_refused_from_its_expiry_by_the_clock_alone() -> None:
    store = KeyStore()
    expiring = KeyEntry(
        id=1, name="k1", enabled=True, allowed_agents=None, requests_per_minute=None,
        expires_at=1000.0,
    )  # fmt: skip
    store.apply(1, [(key_digest("gk_one"), expiring)])
    store.clock = lambda: 999.9
    assert store.lookup(key_digest("gk_one")) == expiring
    store.clock = lambda: 1000.0
    assert store.lookup(key_digest("gk_one")) is None
    assert store.configured and store.version == 1  # an expired key still exists: auth stays on
