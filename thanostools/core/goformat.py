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


def go_special(x: float) -> str | None:
    """How Go prints the values that have no digits to choose: NaN, ±Inf and ±0 (None for any other value)."""
    if math.isnan(x):
        return "NaN"
    if math.isinf(x):
        return "+Inf" if x > 0 else "-Inf"
    if x == 0:
        return "-0" if math.copysign(1.0, x) < 0 else "0"
    return None


def format_g(x: float) -> str:
    """Go ``fmt.Sprintf("%g", x)``: shortest round-trip digits, exponent form when exp < -4 or exp >= 6."""
    special = go_special(x)
    if special is not None:
        return special
    neg = x < 0
    digits, dp = _shortest_digits(abs(x))
    exp = dp - 1
    # Go's shortest %g switches to exponent form below 1e-4 and from 1e6 up (precision 6 rule).
    out = _fmt_e(digits, exp) if (exp < -4 or exp >= 6) else _fmt_f(digits, dp)
    return "-" + out if neg else out


def format_f(x: float) -> str:
    """Go ``strconv.FormatFloat(x, 'f', -1, 64)``: shortest round-trip digits, never an exponent."""
    if math.isnan(x) or math.isinf(x) or x == 0:
        return format_g(x)
    digits, dp = _shortest_digits(abs(x))
    return ("-" if x < 0 else "") + _fmt_f(digits, dp)


def format_f6(x: float) -> str:
    """Go ``fmt.Sprintf("%f", x)``: six decimals."""
    if math.isnan(x) or math.isinf(x):
        return format_g(x)
    return f"{x:f}"


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


_GO_ESCAPES = {"\a": "\\a", "\b": "\\b", "\f": "\\f", "\n": "\\n", "\r": "\\r", "\t": "\\t",
               "\v": "\\v", "\\": "\\\\"}


def _go_escape_char(ch: str, quote: str) -> str:
    o = ord(ch)
    if ch == quote:
        return "\\" + ch
    if ch in _GO_ESCAPES:
        return _GO_ESCAPES[ch]
    if 0xDC80 <= o <= 0xDCFF:  # a byte that was not valid UTF-8 (decoded with surrogateescape)
        return f"\\x{o - 0xDC00:02x}"
    if ch == " " or (ch.isprintable() and not 0xD800 <= o <= 0xDFFF):
        return ch
    if o < 0x20 or o == 0x7F:
        return f"\\x{o:02x}"
    if 0xD800 <= o <= 0xDFFF:
        return "\\ufffd"
    if o < 0x10000:
        return f"\\u{o:04x}"
    return f"\\U{o:08x}"


def go_quote(s: str) -> str:
    """Go ``strconv.Quote`` (and ``%q``): Go escapes, non-printable runes as \\x / \\u / \\U, bytes that were
    not valid UTF-8 (surrogate-escaped) as \\xNN."""
    return '"' + "".join(_go_escape_char(ch, '"') for ch in s) + '"'


def go_quote_rune(ch: str) -> str:
    """Go ``strconv.QuoteRune`` (``%q`` of a rune); the empty string stands for EOF (printed as U+FFFD)."""
    return "'" + _go_escape_char(ch or "\ufffd", "'") + "'"


def go_labels_string(labels: Labels) -> str:
    """Prometheus ``labels.Labels.String()``: ``{a="1", b="2"}`` with every label inside the braces."""
    return "{" + ", ".join(f"{n}={go_quote(v)}" for n, v in labels) + "}"
