"""Go's text renderings that our output must reproduce: ``%g`` floats and ``strconv.Quote`` strings."""

from __future__ import annotations

import math

from thanostools.core.labels import Labels


def _shortest_digits(x: float) -> tuple[str, int]:
    """Shortest round-trip decimal digits and the decimal point position (value = 0.DIGITS × 10^dp)."""
    mant, _, exp = repr(x).partition("e")
    exp_i = int(exp) if exp else 0
    intpart, _, frac = mant.partition(".")
    if frac == "0":
        frac = ""
    combined = intpart + frac
    digits = combined.lstrip("0")
    dp = len(intpart) + exp_i - (len(combined) - len(digits))
    digits = digits.rstrip("0") or "0"
    return digits, dp


def format_g(x: float) -> str:
    """Go ``fmt.Sprintf("%g", x)``: shortest round-trip digits, exponent form when exp < -4 or exp >= 6."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    neg = x < 0
    digits, dp = _shortest_digits(abs(x))
    exp = dp - 1
    # Go's shortest %g switches to exponent form below 1e-4 and from 1e6 up (precision 6 rule).
    out = _fmt_e(digits, exp) if (exp < -4 or exp >= 6) else _fmt_f(digits, dp)
    return "-" + out if neg else out


def _fmt_e(digits: str, exp: int) -> str:
    mant = digits[0] + ("." + digits[1:] if len(digits) > 1 else "")
    sign = "-" if exp < 0 else "+"
    return f"{mant}e{sign}{abs(exp):02d}"


def _fmt_f(digits: str, dp: int) -> str:
    if dp <= 0:
        return "0." + "0" * (-dp) + digits
    if dp >= len(digits):
        return digits + "0" * (dp - len(digits))
    return digits[:dp] + "." + digits[dp:]


def go_quote(s: str) -> str:
    """Go ``strconv.Quote``: double quotes, Go escapes, non-printable runes as \\x / \\u / \\U."""
    out = ['"']
    for ch in s:
        o = ord(ch)
        if ch == '"':
            out.append('\\"')
        elif ch == "\\":
            out.append("\\\\")
        elif ch.isprintable() or ch == " ":
            out.append(ch)
        elif ch in _GO_ESCAPES:
            out.append(_GO_ESCAPES[ch])
        elif o < 0x80:
            out.append(f"\\x{o:02x}")
        elif o < 0x10000:
            out.append(f"\\u{o:04x}")
        else:
            out.append(f"\\U{o:08x}")
    out.append('"')
    return "".join(out)


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t", "\v": "\\v"}


def go_labels_string(labels: Labels) -> str:
    """Prometheus ``labels.Labels.String()``: ``{a="1", b="2"}`` with every label inside the braces."""
    return "{" + ", ".join(f"{n}={go_quote(v)}" for n, v in labels) + "}"
