"""EcgGateway: many sensors, one batched inference worker, the same predictions as one stream per sensor."""
import asyncio

import numpy as np
import pytest

from edge_sdk.errors import ConfigError
from edge_sdk.sources import ReplaySource
from edge_sdk.stream import EcgGateway, EcgStream

RECORDS = ["A00001", "A00009", "A00011", "A00012"]


def test_gateway_equals_one_stream_per_sensor(cinc, bundle_dir):
    recs = [cinc.read(n) for n in RECORDS]

    async def single(rec):
        s = EcgStream(ReplaySource(rec, speed=0), bundle_dir)
        return s, await s.run()

    async def gateway():
        gw = EcgGateway(bundle_dir, max_batch=16)
        for n, rec in zip(RECORDS, recs):
            gw.add(ReplaySource(rec, speed=0), name=n)
        out = {n: [] for n in RECORDS}
        async for name, p in gw:
            out[name].append(p)
        return gw, out

    gw, got = asyncio.run(gateway())
    assert gw.batches < gw.windows_classified  # windows of several sensors shared model calls
    for n, rec in zip(RECORDS, recs):
        one, want = asyncio.run(single(rec))
        member = next(m for m in gw.members if m.name == n)  # the record's label by the card's rule, too
        assert member.record_decision().label == one.record_decision().label
        assert member.record_decision().n_windows == len(want)
        assert [p.window_index for p in got[n]] == [p.window_index for p in want] and want
        a = np.array([[p.probabilities[k] for k in p.probabilities] for p in got[n]])
        b = np.array([[p.probabilities[k] for k in p.probabilities] for p in want])
        np.testing.assert_allclose(a, b, atol=1e-5)
        assert [p.detected for p in got[n]] == [p.detected for p in want]
        assert [p.quality for p in got[n]] == [p.quality for p in want]


def test_gateway_stays_bounded_with_a_slow_consumer(mitdb, bundle_dir):
    rec = mitdb.read("201", sampto=360 * 300)

    async def consume():
        gw = EcgGateway(bundle_dir, max_batch=1, max_queue=2)
        events = []
        for k in range(3):
            gw.add(ReplaySource(rec, speed=0), name=f"s{k}", on_event=events.append)
        seen = 0
        async for _, p in gw:
            seen += sum(e.kind == "windows_dropped" for e in p.events)
            await asyncio.sleep(0.02)
        return gw, events, seen

    gw, events, seen = asyncio.run(consume())
    dropped = sum(m.windows_dropped for m in gw.members)
    assert dropped > 0 and sum(e.kind == "windows_dropped" for e in events) == dropped
    # every drop reaches a later prediction of its sensor, except those after that sensor's last window
    assert 0 < seen <= dropped
    assert gw.windows_classified + dropped == sum(m.windower._count for m in gw.members)


def test_gateway_arguments_are_checked(bundle_dir, cinc):
    with pytest.raises(ConfigError, match="max_batch"):
        EcgGateway(bundle_dir, max_batch=0)
    gw = EcgGateway(bundle_dir)
    gw.add(ReplaySource(cinc.read("A00001"), speed=0), name="x")
    with pytest.raises(ConfigError, match="already"):
        gw.add(ReplaySource(cinc.read("A00001"), speed=0), name="x")

    async def empty():
        async for _ in EcgGateway(bundle_dir):
            pass

    with pytest.raises(ConfigError, match="no sensor"):
        asyncio.run(empty())
