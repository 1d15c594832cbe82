"""nsPod.manifest.quantity against Kubernetes' own documented examples and test tables."""
from fractions import Fraction

import pytest

from nsPod.manifest.quantity import (canonical, format_bytes, parse_bytes, parse_cpu_millis,
                                     parse_quantity)

# https://kubernetes.io/docs/concepts/configuration/manage-resources-containers/: "the
# following represent roughly the same value: 128974848, 129e6, 129M, 128974848000m, 123Mi".
SAME_MEMORY = [
    ("128974848", 128974848),
    ("129e6", 129000000),
    ("129M", 129000000),
    ("128974848000m", 128974848),
    ("123Mi", 128974848),
]


@pytest.mark.parametrize("text,expected", SAME_MEMORY)
def test_documented_memory_examples(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("1", 1), ("0", 0), ("1Ki", 1024), ("1Mi", 2**20), ("1Gi", 2**30), ("1Ti", 2**40),
    ("1Pi", 2**50), ("1Ei", 2**60), ("1k", 1000), ("1M", 10**6), ("1G", 10**9),
    ("1T", 10**12), ("1P", 10**15), ("1E", 10**18), ("1e3", 1000), ("1E3", 1000),
    ("1e+3", 1000), ("1.5Gi", 1610612736), ("1.5G", 1500000000), (".5Gi", 536870912),
    ("1.", 1), ("1.G", 10**9), ("+1k", 1000), ("007", 7), ("0.5", 1), ("1m", 1),
    ("100.035Ki", 102436), ("1000", 1000),
])
def test_parse_bytes(text, expected):
    assert parse_bytes(text) == expected


@pytest.mark.parametrize("text,expected", [
    ("0.5", 500), ("500m", 500), ("1", 1000), ("2", 2000), ("0.1", 100), ("1.5", 1500),
    ("100m", 100), ("0.0001", 1), ("1n", 1), ("1e-3", 1), ("250u", 1),
])
def test_parse_cpu_millis_rounds_up(text, expected):
    assert parse_cpu_millis(text) == expected


@pytest.mark.parametrize("value,expected", [
    (1000, 1000), (0, 0), (0.5, Fraction(1, 2)), (1.5e-05, Fraction(15, 10**6)),
    (1e20, 10**20),
])
def test_yaml_numbers_are_read_from_their_text(value, expected):
    assert parse_quantity(value) == expected


def test_exact_values():
    assert parse_quantity("0.1") == parse_quantity("100m") == Fraction(1, 10)
    assert parse_quantity("-1.5") == Fraction(-3, 2)
    # Kubernetes keeps nine decimal places, rounding up so a tiny amount stays non-zero.
    assert parse_quantity("0.1n") == Fraction(1, 10**9)
    assert parse_quantity("1e-20") == Fraction(1, 10**9)
    assert parse_quantity("-1e-20") == Fraction(-1, 10**9)


def test_binary_quantities_are_capped_at_int64_as_in_kubernetes():
    assert parse_quantity("9Ei") == 2**63 - 1


@pytest.mark.parametrize("text", [
    "12XB", "", "1.2.3", "Mi", "--1", "+-1", "1i", ".5i", "-3.01i", "0.1mi", "0.1am", "aoeu",
    "1.1.M", "1+1.0M", "-3.01e-", " 1", "1 ", "1K", "1KiB", "1e", "1e+", "1e1.5", "1 Ki",
    "inf", "NaN", "0x10", "1_000", "１", "m", "-", ".", "e3",
])
def test_not_quantities(text):
    with pytest.raises(ValueError) as info:
        parse_quantity(text)
    assert "is not a quantity (examples: 512Mi, 1Gi)" in str(info.value)


def test_error_message_names_the_text():
    with pytest.raises(ValueError, match=r'^"12XB" is not a quantity \(examples: 512Mi, 1Gi\)$'):
        parse_quantity("12XB")
    with pytest.raises(ValueError, match=r'^"2 cores" is not a quantity \(examples: 500m, 2\)$'):
        parse_cpu_millis("2 cores")


@pytest.mark.parametrize("value", [True, None, [1], {"a": 1}, float("inf")])
def test_other_yaml_values_are_not_quantities(value):
    with pytest.raises(ValueError, match="is not a quantity"):
        parse_quantity(value)


def test_huge_exponents_are_refused_quickly():
    with pytest.raises(ValueError, match="exponent out of range"):
        parse_quantity("1e2000000000")


def test_bytes_and_millis_refuse_negative_and_huge():
    with pytest.raises(ValueError, match='"-1Gi" must not be negative'):
        parse_bytes("-1Gi")
    with pytest.raises(ValueError, match="must not be negative"):
        parse_cpu_millis("-100m")
    with pytest.raises(ValueError, match='"1000E" is too large'):
        parse_bytes("1000E")


@pytest.mark.parametrize("text,expected", [
    # Kubernetes' documented canonical forms, and its quantity_test.go table.
    ("1.5", "1500m"), ("1.5Gi", "1536Mi"), ("0", "0"), ("1000", "1k"), ("1024", "1024"),
    ("1Ki", "1Ki"), ("0.5Ki", "512"), ("1e3", "1e3"), ("1E3", "1e3"), ("1000m", "1"),
    ("0.001", "1m"), ("129M", "129M"), ("129e6", "129e6"), ("123Mi", "123Mi"),
    ("128974848000m", "128974848"), ("1Mi", "1Mi"), ("1024Ki", "1Mi"), ("1e-3", "1e-3"),
    ("-1.5", "-1500m"), ("1e0", "1"), ("1.5e-05", "15e-6"), ("300.2T", "300200G"),
])
def test_canonical(text, expected):
    assert canonical(text) == expected


@pytest.mark.parametrize("n,expected", [
    (536870912, "512Mi"), (1500000000, "1500M"), (0, "0"), (1, "1"), (1023, "1023"),
    (1024, "1Ki"), (1000, "1k"), (2**30, "1Gi"), (10**9, "1G"), (3 * 2**40, "3Ti"),
    (1536 * 2**20, "1536Mi"), (-2**20, "-1Mi"), (123456789, "123456789"),
])
def test_format_bytes(n, expected):
    assert format_bytes(n) == expected


@pytest.mark.parametrize("n", [1, 1000, 1024, 536870912, 1500000000, 123456789, 7 * 2**60])
def test_format_bytes_round_trips(n):
    assert parse_bytes(format_bytes(n)) == n
