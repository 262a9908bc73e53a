"""``peaknet-serve status --wait-frames``: settled counts over every ingress replica."""

from __future__ import annotations

from peaknet_serve.cli.status import settled


def test_settled_counts_every_ingress_when_the_answer_adds_them_up() -> None:
    one_replica = {"received": 30, "in_flight": 0}
    answer = {**one_replica, "service": {"received": 64, "in_flight": 2, "ingress_replicas": 2}}
    assert settled(one_replica, 30)
    assert not settled(answer, 30)  # the other ingress still has frames in flight
    answer["service"]["in_flight"] = 0
    assert settled(answer, 64)
    assert not settled(answer, 65)
