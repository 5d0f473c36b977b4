"""The reconnect policy alone: exponential backoff, capped, jittered within [d/2, d], limited attempts."""
import pytest

from edge_sdk.errors import ConfigError
from edge_sdk.sources.polar.reconnect import ReconnectPolicy


def test_backoff_doubles_is_capped_and_jittered():
    p = ReconnectPolicy(initial_s=0.5, max_s=4.0, max_attempts=6, seed=3)
    for k, d in enumerate([0.5, 1.0, 2.0, 4.0, 4.0, 4.0]):
        assert d / 2 <= p.delay_s(k) <= d
    assert [ReconnectPolicy(seed=1).delay_s(k) for k in range(4)] == [ReconnectPolicy(seed=1).delay_s(k) for k in range(4)]
    assert p.may_try(5) and not p.may_try(6) and ReconnectPolicy(max_attempts=None).may_try(10 ** 6)


def test_reconnecting_forever_stays_at_the_cap():
    """Attempt 1024 used to raise OverflowError (2.0 ** 1024) inside the source, some hours out of range."""
    p = ReconnectPolicy(initial_s=0.5, max_s=30.0, max_attempts=None, seed=0)
    for k in (6, 7, 1023, 1024, 1100, 10 ** 9):
        assert p.may_try(k) and 15.0 <= p.delay_s(k) <= 30.0
    assert ReconnectPolicy(initial_s=1.0, max_s=1.0, max_attempts=None).delay_s(5000) <= 1.0


@pytest.mark.parametrize("kw", [{"initial_s": 0}, {"initial_s": 2.0, "max_s": 1.0}, {"max_attempts": -1},
                                {"initial_s": float("inf"), "max_s": float("inf")}, {"max_s": float("nan")},
                                {"initial_s": "1"}, {"max_attempts": "3"}, {"max_attempts": 2.5}])
def test_bad_policies_are_named_errors(kw):
    with pytest.raises(ConfigError):
        ReconnectPolicy(**kw)
