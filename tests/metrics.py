"""Prometheus samples read from exposition text (a /metrics scrape), by exact name and labels.

A series that is not exported is an error (`sample`), never a silent 0: a metric that was
renamed, lost a label or never got created must fail the test that reads it. Where "not exported
yet" is a legitimate answer (a labelled counter before its first increment), the caller says so
with `sample_or_absent` and decides what absence means."""

from prometheus_client.parser import text_string_to_metric_families


def sample_or_absent(text: str, name: str, **labels: str) -> float | None:
    """The value of the sample named `name` (as exposed: `x_total`, `x_count`, `x_bucket`, ...)
    whose labels are exactly `labels`; None when no such series is exported."""
    found = [
        sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
        if sample.name == name and sample.labels == labels
    ]
    assert len(found) <= 1, f"{len(found)} samples for {_series(name, labels)}"
    return found[0] if found else None


def sample(text: str, name: str, **labels: str) -> float:
    """Like `sample_or_absent`, but a missing series fails, naming it and what is exported."""
    value = sample_or_absent(text, name, **labels)
    if value is None:
        exported = sorted(
            _series(s.name, s.labels)
            for family in text_string_to_metric_families(text)
            for s in family.samples
            if s.name == name
        )
        raise AssertionError(
            f"{_series(name, labels)} is not exported; {name} series: {exported or 'none'}"
        )
    return value


def _series(name: str, labels: dict[str, str]) -> str:
    return name + "{" + ",".join(f'{k}="{v}"' for k, v in sorted(labels.items())) + "}"
