"""The PeakNet deployment's dynamic batching without Ray: requests of one kind go to the engine
together, a lone request as it came (no copy of its frames)."""

from __future__ import annotations

import numpy as np

from deployments.peaknet import count_frames, stack_by_kind


def test_a_lone_request_goes_to_the_engine_as_it_came() -> None:
    block = np.zeros((16, 32, 48), dtype=np.float32)
    ((indices, stacked),) = stack_by_kind([block])
    assert indices == [0] and stacked is block


def test_requests_are_stacked_per_frame_shape_and_dtype_in_request_order() -> None:
    rng = np.random.default_rng(0)
    a = rng.random((2, 8, 8), dtype=np.float32)
    b = rng.random((3, 8, 8)).astype(np.float64)
    c = rng.random((1, 8, 8), dtype=np.float32)
    d = rng.random((4, 6, 8), dtype=np.float32)
    stacks = stack_by_kind([a, b, c, d])
    assert [indices for indices, _ in stacks] == [[0, 2], [1], [3]]
    np.testing.assert_array_equal(stacks[0][1], np.concatenate([a, c]))
    assert stacks[1][1] is b and stacks[2][1] is d
    assert count_frames([a, b, c, d]) == 10
