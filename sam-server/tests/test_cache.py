from sam_server.cache import EmbeddingCache


def test_the_least_recently_used_image_goes_first_and_the_bytes_stay_under_the_bound():
    cache = EmbeddingCache(limit_bytes=30)
    cache.put("a", "A", 10)
    cache.put("b", "B", 10)
    cache.put("c", "C", 10)
    assert cache.get("a") == "A"  # a is now the most recently used
    cache.put("d", "D", 10)
    assert cache.get("b") is None and cache.get("a") == "A"
    stats = cache.stats()
    assert (stats.images, stats.bytes, stats.hits, stats.misses) == (3, 30, 2, 1)


def test_an_entry_larger_than_the_bound_is_not_kept_and_evicts_nothing():
    cache = EmbeddingCache(limit_bytes=30)
    cache.put("a", "A", 10)
    cache.put("huge", "H", 31)
    assert cache.peek("huge") is None and cache.peek("a") == "A"


def test_peek_counts_neither_hit_nor_miss_and_a_replaced_entry_frees_its_bytes():
    cache = EmbeddingCache(limit_bytes=30)
    cache.put("a", "A", 20)
    cache.put("a", "A2", 5)
    assert cache.peek("a") == "A2" and cache.peek("b") is None
    stats = cache.stats()
    assert (stats.bytes, stats.hits, stats.misses) == (5, 0, 0)
