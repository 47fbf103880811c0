"""Reading a Prometheus scrape in tests, with prometheus_client's own parser."""

from __future__ import annotations

from prometheus_client.parser import text_string_to_metric_families

Samples = dict[tuple[str, frozenset], float]


def samples(text: str) -> Samples:
    """Every sample of a scrape, by name and labels."""
    return {
        (sample.name, frozenset(sample.labels.items())): sample.value
        for family in text_string_to_metric_families(text)
        for sample in family.samples
    }


def labels(**values: str) -> frozenset:
    return frozenset(values.items())


def requests_counted(scrape: Samples, method: str, route: str, status: int) -> float:
    return scrape.get(("herd_http_requests_total", labels(method=method, route=route, status=str(status))), 0.0)
