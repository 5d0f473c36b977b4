"""The streaming windower equals slicing the whole signal, for any block sizes, hops and resets."""
import numpy as np
from hypothesis import given, settings
from hypothesis import strategies as st

from edge_sdk.stream import Windower


@settings(max_examples=120, deadline=None, derandomize=True)
@given(n=st.integers(0, 3000), window=st.integers(1, 400), hop=st.integers(1, 600),
       blocks=st.lists(st.integers(1, 250), min_size=1, max_size=40))
def test_windows_equal_slices_of_the_signal(n, window, hop, blocks):
    x = np.arange(n, dtype=np.float64)
    w = Windower(window, hop)
    got, i, b = [], 0, 0
    while i < n:
        k = blocks[b % len(blocks)]
        got += w.push(x[i:i + k], x[i:i + k] / 500, x[i:i + k] / 500 + 7)
        i, b = i + k, b + 1
    starts = range(0, n - window + 1, hop)
    assert [g.index for g in got] == list(range(len(starts)))
    for g, s in zip(got, starts):
        assert np.array_equal(g.values_mv, x[s:s + window])
        assert g.start_sensor_s == s / 500 and g.end_sensor_s == (s + window - 1) / 500
        assert g.end_host_s == (s + window - 1) / 500 + 7


def test_reset_drops_the_partial_window_and_starts_a_segment():
    w = Windower(10, 5)
    x = np.arange(30, dtype=float)
    assert len(w.push(x[:12], x[:12], x[:12])) == 1
    w.reset()
    out = w.push(x[12:30], x[12:30], x[12:30])
    assert [o.values_mv[0] for o in out] == [12.0, 17.0] and {o.segment for o in out} == {1}
    assert w.dropped_samples == 7  # 5..11 were waiting for the next window
