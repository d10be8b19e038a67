"""The server's Prometheus metrics (scraped at /metrics; the stack's alerts read them)."""

from __future__ import annotations

from prometheus_client import CollectorRegistry, Counter, Gauge, Histogram

# A click answered from cached features is one decoder pass (tens of ms on a GPU, about 0.1 s
# on a CPU); one that has to embed first takes seconds on a CPU.
CLICK_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16, 32)
EMBEDDING_BUCKETS = (0.05, 0.1, 0.25, 0.5, 1, 2, 4, 8, 16)


class Metrics:
    def __init__(self, registry: CollectorRegistry):
        self.registry = registry
        self.click_seconds = Histogram(
            "sam_click_seconds", "Time from a click's arrival to its mask, by whether the image's features were cached.",
            ["cache"], buckets=CLICK_BUCKETS, registry=registry)
        self.embedding_seconds = Histogram(
            "sam_embedding_seconds", "Time the model took to embed one image.", buckets=EMBEDDING_BUCKETS,
            registry=registry)
        self.download_seconds = Histogram(
            "sam_download_seconds", "Time to download one task image from Label Studio.", buckets=EMBEDDING_BUCKETS,
            registry=registry)
        self.cache_lookups = Counter(
            "sam_cache_lookups", "Clicks' lookups of their image's features, by result.", ["result"], registry=registry)
        self.cache_bytes = Gauge("sam_cache_bytes", "Bytes of features held in the embedding cache.", registry=registry)
        self.cache_limit_bytes = Gauge("sam_cache_limit_bytes", "The embedding cache's bound.", registry=registry)
        self.cache_images = Gauge("sam_cache_images", "Images whose features the cache holds.", registry=registry)
        self.queue_depth = Gauge(
            "sam_queue_depth", "Embeddings waiting for the model, by what asked for them.", ["kind"], registry=registry)
        self.warmups = Counter(
            "sam_warmups", "Warm-ups asked for as labelers open tasks, by outcome.", ["outcome"], registry=registry)
        self.forwarded = Counter(
            "sam_forwarded", "Requests passed to the replica owning their image, by outcome.", ["outcome"],
            registry=registry)
        self.errors = Counter("sam_predict_errors", "Predictions answered with an error.", registry=registry)
