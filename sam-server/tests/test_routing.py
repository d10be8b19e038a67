from collections import Counter

from sam_server.routing import Replicas, owner

REPLICAS = ("10.0.0.1:9090", "10.0.0.2:9090", "10.0.0.3:9090")


def test_every_replica_names_the_same_owner_whatever_the_order_it_lists_them_in():
    for key in (f"s3://bucket/image {index}.png" for index in range(50)):
        assert owner(key, REPLICAS) == owner(key, tuple(reversed(REPLICAS)))


def test_images_spread_over_the_replicas():
    owners = Counter(owner(f"s3://bucket/{index}.jpg", REPLICAS) for index in range(3000))
    assert set(owners) == set(REPLICAS) and min(owners.values()) > 800


def test_a_replica_leaving_moves_only_its_own_images():
    keys = [f"s3://bucket/{index}.jpg" for index in range(1000)]
    before = {key: owner(key, REPLICAS) for key in keys}
    after = {key: owner(key, REPLICAS[:2]) for key in keys}
    assert all(after[key] == before[key] for key in keys if before[key] != REPLICAS[2])


def test_a_name_stands_for_every_address_it_resolves_to_looked_up_again_after_a_while():
    now = [0.0]
    answers = {"sam-peers:9090": ["10.0.0.2:9090", "10.0.0.3:9090"]}
    replicas = Replicas("10.0.0.1:9090", ["sam-peers:9090"], resolver=lambda name: answers[name],
                        clock=lambda: now[0])
    assert replicas.all() == REPLICAS
    answers["sam-peers:9090"] = ["10.0.0.2:9090"]
    assert replicas.all() == REPLICAS
    now[0] = 60.0
    assert replicas.all() == REPLICAS[:2]


def test_without_an_answer_a_replica_keeps_itself():
    replicas = Replicas("10.0.0.1:9090", ["sam-peers:9090"], resolver=lambda name: [])
    assert replicas.owner("s3://bucket/a.png") == "10.0.0.1:9090"
