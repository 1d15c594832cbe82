"""Kubernetes resource quantities, read as apimachinery's resource.ParseQuantity reads them.

Values are exact Fractions: "0.1" and "100m" must compare equal, and 1.5Gi is 1610612736
bytes, not a float near it. One deliberate difference from Kubernetes: a quantity needs at
least one digit. ParseQuantity takes "Mi", "m", "." or "-" for zero, which is always a typo.
"""
import math
import re
from fractions import Fraction

_BINARY = {"Ki": 10, "Mi": 20, "Gi": 30, "Ti": 40, "Pi": 50, "Ei": 60}
_DECIMAL = {"n": -9, "u": -6, "m": -3, "": 0, "k": 3, "M": 6, "G": 9, "T": 12, "P": 15, "E": 18}
_DECIMAL_SUFFIX = {exponent: suffix for suffix, exponent in _DECIMAL.items()}
_NUMBER = re.compile(r"([+-]?)([0-9]*)(?:\.([0-9]*))?(.*)", re.DOTALL)
_EXPONENT = re.compile(r"[eE][+-]?[0-9]+")
_NANO = 10**9
_INT64_MAX = 2**63 - 1
# Kubernetes keeps any exponent an int32 holds, but 10**2000000000 would take minutes and
# gigabytes to build; no resource is anywhere near 1e1000, nor finer than the 1n it rounds to.
_EXPONENT_LIMIT = 1000
# Likewise for digits: an int64 has 19, and Python refuses to read more than 4300 at once.
_DIGITS_LIMIT = 100

MEMORY_EXAMPLES = "512Mi, 1Gi"
CPU_EXAMPLES = "500m, 2"


def parse_quantity(text, examples=MEMORY_EXAMPLES):
    """The quantity's exact value; ValueError naming the text when it is not one.

    YAML gives `memory: 1000` as an int and `cpu: 0.5` as a float; both are read as the
    API server reads a JSON number, from their decimal text.
    """
    return _parse(text, examples)[0]


def parse_bytes(text):
    """A size in whole bytes, rounded up as Quantity.Value() rounds."""
    return _whole(text, 1, MEMORY_EXAMPLES)


def parse_cpu_millis(text):
    """CPU in millicores, rounded up as Quantity.MilliValue() rounds (0.0001 is 1m)."""
    return _whole(text, 1000, CPU_EXAMPLES)


def canonical(text):
    """The quantity as Kubernetes prints it back (String()): 1.5 -> 1500m, 1.5Gi -> 1536Mi."""
    value, form = _parse(text, MEMORY_EXAMPLES)
    if value == 0:
        return "0"
    sign = "-" if value < 0 else ""
    value = abs(value)
    if form == "BinarySI" and value >= 1024 and value.denominator == 1:
        amount, power = int(value), 0
        while amount % 1024 == 0:
            amount //= 1024
            power += 10
        suffix = next(s for s, p in _BINARY.items() if p == power) if power else ""
        return f"{sign}{amount}{suffix}"
    amount, exponent = int(value * _NANO), -9
    while amount % 10 == 0:
        amount //= 10
        exponent += 1
    shift = exponent % 3
    amount, exponent = amount * 10**shift, exponent - shift
    if form == "DecimalExponent" or exponent not in _DECIMAL_SUFFIX:
        return f"{sign}{amount}" + (f"e{exponent}" if exponent else "")
    return f"{sign}{amount}{_DECIMAL_SUFFIX[exponent]}"


def format_bytes(n, readable=False):
    """A byte count the way a person writes it: 536870912 -> 512Mi, 1500000000 -> 1500M.

    nspod's one byte formatter. Exact by default (a quantity that parses back to n, for
    manifests); readable=True is for messages and tables: binary suffixes, two decimals at
    most, and a "~" when they do not show the value exactly (1.25Gi, ~23.25Gi, 300).
    """
    if readable:
        return _readable_bytes(n)
    if n < 0:
        return "-" + format_bytes(-n)
    if n == 0:
        return "0"
    for suffix, power in reversed(_BINARY.items()):
        if n % (1 << power) == 0:
            return f"{n >> power}{suffix}"
    for suffix in ("E", "P", "T", "G", "M", "k"):
        scale = 10 ** _DECIMAL[suffix]
        if n % scale == 0:
            return f"{n // scale}{suffix}"
    return str(n)


def _readable_bytes(n):
    if abs(n) < 1024:
        return str(n)
    scale, unit = 1, ""
    for unit in _BINARY:
        scale *= 1024
        if abs(n) < scale * 1024:
            break
    text = f"{n / scale:.2f}".rstrip("0").rstrip(".") + unit
    return text if (n * 100) % scale == 0 else "~" + text


def _whole(text, scale, examples):
    value = _parse(text, examples)[0]
    if value < 0:
        raise ValueError(f"{_show(text)} must not be negative")
    whole = math.ceil(value * scale)
    if whole > _INT64_MAX:
        raise ValueError(f"{_show(text)} is too large")
    return whole


def _parse(text, examples):
    """(value, format) where format is DecimalSI, BinarySI or DecimalExponent, as Kubernetes
    records it: the format decides how the quantity is printed back (see canonical)."""
    if isinstance(text, bool) or not isinstance(text, (str, int, float)):
        raise ValueError(f"{_show(text)} is not a quantity (examples: {examples})")
    string = text if isinstance(text, str) else repr(text)
    match = _NUMBER.fullmatch(string)
    sign, whole, fraction, suffix = match.groups()
    fraction = fraction or ""
    if not (whole or fraction):
        raise ValueError(f"{_show(text)} is not a quantity (examples: {examples})")
    if len(whole) + len(fraction) > _DIGITS_LIMIT:
        raise ValueError(f"{_show(text)} has more than {_DIGITS_LIMIT} digits")
    value = Fraction(int(whole + fraction or "0"), 10 ** len(fraction))
    if sign == "-":
        value = -value
    if suffix in _DECIMAL:
        form, value = "DecimalSI", value * Fraction(10) ** _DECIMAL[suffix]
    elif suffix in _BINARY:
        form, value = "BinarySI", value * 2 ** _BINARY[suffix]
    elif _EXPONENT.fullmatch(suffix):
        exponent = int(suffix[1:])
        if abs(exponent) > _EXPONENT_LIMIT:
            raise ValueError(f"{_show(text)}: exponent out of range")
        form, value = "DecimalExponent", value * Fraction(10) ** exponent
    else:
        raise ValueError(f"{_show(text)} is not a quantity (examples: {examples})")
    # Kubernetes keeps nine decimal places, rounding away from zero so that a tiny request
    # still asks for something.
    scaled = value * _NANO
    if scaled.denominator != 1:
        value = Fraction((1 if value > 0 else -1) * math.ceil(abs(scaled)), _NANO)
    if form == "BinarySI" and abs(value) > _INT64_MAX:
        value = _INT64_MAX if value > 0 else -_INT64_MAX
    return value, form


def _show(text):
    if isinstance(text, str):
        import json  # only on the error path: keeps importing this module cheap
        shown = json.dumps(text, ensure_ascii=False)
        return shown if len(shown) <= 40 else shown[:36] + '..."'
    if isinstance(text, bool):
        return "true" if text else "false"
    if text is None:
        return "null"
    if isinstance(text, (int, float)):
        shown = repr(text)
        return shown if len(shown) <= 40 else f"{shown[:36]}..."
    return f"a {type(text).__name__}"
