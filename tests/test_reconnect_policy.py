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


@pytest.mark.parametrize("kw", [{"initial_s": 0}, {"initial_s": 2.0, "max_s": 1.0}, {"max_attempts": -1}])
def test_bad_policies_are_named_errors(kw):
    with pytest.raises(ConfigError):
        ReconnectPolicy(**kw)
