"""``tether.Limits`` and the ETF codec's options given wrong values: typed errors naming the field, at construction."""

from __future__ import annotations

import pytest

import tether
from tether import Limits, ValidationError, etf


@pytest.mark.parametrize("field, value", [
    ("max_depth", "100"), ("max_frame_size", -1), ("max_atoms", True), ("max_terms", 1.5), ("max_depth", 1 << 63),
])
def test_limits_refuse_a_bad_value_when_built_as_when_replaced(field, value):
    for build in (lambda: Limits(**{field: value}), lambda: Limits().replace(**{field: value})):
        with pytest.raises(ValidationError, match=rf"Limit '{field}' must be an int in \d+\.\.2\*\*63-1"):
            build()


def test_the_largest_limit_is_accepted_and_decodes():
    top = Limits().replace(**{f: (1 << 63) - 1 for f in ("max_depth", "max_atoms", "max_terms")})
    assert etf.decode(etf.encode({"a": [1]}), binaries="str", limits=top) == {"a": [1]}


@pytest.mark.parametrize("call, needle", [
    (lambda: etf.encode(1, minor_version=2.0), "Invalid minor_version 2.0"),
    (lambda: etf.encode(1, minor_version=True), "Invalid minor_version True"),
    (lambda: etf.encode([1], limits={"max_depth": 3}), "limits must be a tether.Limits, got dict"),
    (lambda: etf.decode(b"\x83a\x01", limits=5), "limits must be a tether.Limits, got int"),
    (lambda: etf.decode(b"\x83a\x01", structs="no"), "structs must be True or False"),
])
def test_etf_options_with_a_bad_value_raise_validation_errors(call, needle):
    with pytest.raises(ValidationError, match=needle):
        call()


def test_valid_etf_options_still_work():
    assert etf.decode(etf.encode((tether.Atom("ok"), 1), minor_version=1), structs=False) == (tether.Atom("ok"), 1)
