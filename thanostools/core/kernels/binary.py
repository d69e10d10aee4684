"""Kernels for the index's binary encodings: varints, CRC32C, series entries, postings.

Every kernel takes a whole ``uint8`` buffer and arrays of offsets, so one call handles a whole
batch of entries. Errors come back as a status (index of the bad entry, or -1) instead of
exceptions, and the Python wrapper turns them into ``CorruptBlockError`` with the offset.
"""

from __future__ import annotations

import numpy as np

from thanostools.core.kernels._hwcrc import HAVE_HW_CRC, hw_crc32c
from thanostools.core.kernels._jit import HAVE_NUMBA, njit
from thanostools.core.kernels.dtypes import I64, U8

if HAVE_NUMBA:

    @njit
    def wrap64(x: int) -> int:
        """``x`` as a signed 64-bit integer: compiled integer arithmetic wraps by itself."""
        return x

    @njit
    def unsigned64(x: int) -> np.uint64:
        """``x`` (signed or not) as the ``uint64`` with the same 64 bits."""
        return np.uint64(x)

else:

    def wrap64(x: int) -> int:
        """``x`` as a signed 64-bit integer, wrapping as compiled code does (Python ints never overflow)."""
        return (int(x) + (1 << 63)) % (1 << 64) - (1 << 63)

    def unsigned64(x: int) -> np.uint64:
        """``x`` (signed or not) as the ``uint64`` with the same 64 bits (numpy refuses negative ints)."""
        return np.uint64(int(x) % (1 << 64))


def _make_crc_tables() -> I64:
    """Slicing-by-8 tables for reflected CRC-32C: row 0 is the classic byte table."""
    tables = np.zeros((8, 256), dtype=np.int64)
    for i in range(256):
        c = i
        for _ in range(8):
            c = (c >> 1) ^ 0x82F63B78 if c & 1 else c >> 1
        tables[0, i] = c
    for k in range(1, 8):
        for i in range(256):
            prev = int(tables[k - 1, i])
            tables[k, i] = (prev >> 8) ^ int(tables[0, prev & 0xFF])
    return tables


CRC_TABLES = _make_crc_tables()


@njit
def table_crc32c(buf: U8, start: int, end: int) -> int:
    """CRC-32C of ``buf[start:end]``, eight bytes per step (slicing-by-8)."""
    t = CRC_TABLES
    c = 0xFFFFFFFF
    i = start
    while i + 8 <= end:
        c ^= int(buf[i]) | (int(buf[i + 1]) << 8) | (int(buf[i + 2]) << 16) | (int(buf[i + 3]) << 24)
        c = (t[7, c & 0xFF] ^ t[6, (c >> 8) & 0xFF] ^ t[5, (c >> 16) & 0xFF] ^ t[4, c >> 24]
             ^ t[3, buf[i + 4]] ^ t[2, buf[i + 5]] ^ t[1, buf[i + 6]] ^ t[0, buf[i + 7]])
        i += 8
    while i < end:
        c = t[0, (c ^ int(buf[i])) & 0xFF] ^ (c >> 8)
        i += 1
    return c ^ 0xFFFFFFFF


# The CPU's CRC instruction where there is one; every kernel below calls whichever this is.
crc32c = hw_crc32c if HAVE_HW_CRC else table_crc32c


@njit
def be32(buf: U8, pos: int) -> int:
    return (int(buf[pos]) << 24) | (int(buf[pos + 1]) << 16) | (int(buf[pos + 2]) << 8) | int(buf[pos + 3])


@njit
def uvarint(buf: U8, pos: int, end: int) -> tuple[int, int]:
    """Decode an unsigned varint at ``pos``; returns (value, new pos) or (0, -1) when truncated."""
    result = 0
    shift = 0
    while pos < end:
        b = int(buf[pos])
        pos += 1
        if shift == 63 and b > 1:
            return 0, -1
        result |= (b & 0x7F) << shift
        if b < 0x80:
            return wrap64(result), pos
        shift += 7
        if shift > 63:
            return 0, -1
    return 0, -1


@njit
def varint(buf: U8, pos: int, end: int) -> tuple[int, int]:
    u, pos = uvarint(buf, pos, end)
    # zig-zag decode of the 64 bits in u (a signed int64): a logical shift right, then the sign
    return ((u >> 1) & 0x7FFFFFFFFFFFFFFF) ^ -(u & 1), pos


@njit
def scan_uvarint_strings(buf: U8, pos: int, end: int, count: int) -> tuple[I64, I64, int]:
    """Locate ``count`` uvarint-length-prefixed strings; returns (starts, ends, status/endpos).

    The third value is the position after the last string, or -1 when the section is truncated.
    """
    starts = np.empty(count, dtype=np.int64)
    ends = np.empty(count, dtype=np.int64)
    for i in range(count):
        n, pos = uvarint(buf, pos, end)
        if pos < 0 or n < 0 or n > end - pos:
            return starts, ends, -1
        starts[i] = pos
        ends[i] = pos + n
        pos += n
    return starts, ends, pos


@njit
def decode_series_entries(
    buf: U8, offsets: I64, check_crc: bool
) -> tuple[I64, I64, I64, I64, I64, I64, I64, I64, int]:
    """Decode the index series entries that start at ``offsets``.

    Returns (label_offsets, label_names, label_values, chunk_offsets, chunk_mint, chunk_maxt,
    chunk_ref, entry_ends, bad) where label pairs of entry i are ``label_*[label_offsets[i]:label_offsets[i+1]]``
    and its chunks ``chunk_*[chunk_offsets[i]:chunk_offsets[i+1]]``; ``bad`` is -1 or the index of the
    first entry that is truncated or fails its CRC (the arrays are then incomplete).
    """
    n = offsets.shape[0]
    end = buf.shape[0]
    nlab = 0
    nchk = 0
    # Pass 1: count labels and chunks, check bounds and CRCs.
    for i in range(n):
        pos = offsets[i]
        blen, pos = uvarint(buf, pos, end)
        if pos < 0 or blen < 0 or blen > end - pos - 4:
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                    np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), i)
        body_end = pos + blen
        if check_crc and crc32c(buf, pos, body_end) != be32(buf, body_end):
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                    np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), i)
        k, pos = uvarint(buf, pos, body_end)
        if pos < 0 or k < 0 or k > blen:  # every label pair takes at least two bytes
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                    np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), i)
        for _ in range(2 * k):
            _v, pos = uvarint(buf, pos, body_end)
            if pos < 0:
                break
        c = 0
        if pos >= 0:
            c, pos = uvarint(buf, pos, body_end)
        if pos < 0 or c < 0 or c > blen:  # every chunk meta takes at least three bytes
            return (np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64),
                    np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), np.empty(0, np.int64), i)
        nlab += k
        nchk += c
    label_offsets = np.empty(n + 1, np.int64)
    label_names = np.empty(nlab, np.int64)
    label_values = np.empty(nlab, np.int64)
    chunk_offsets = np.empty(n + 1, np.int64)
    chunk_mint = np.empty(nchk, np.int64)
    chunk_maxt = np.empty(nchk, np.int64)
    chunk_ref = np.empty(nchk, np.int64)
    entry_ends = np.empty(n, np.int64)
    li = 0
    ci = 0
    for i in range(n):
        pos = offsets[i]
        blen, pos = uvarint(buf, pos, end)
        body_end = pos + blen
        entry_ends[i] = body_end + 4
        label_offsets[i] = li
        chunk_offsets[i] = ci
        k, pos = uvarint(buf, pos, body_end)
        for _ in range(k):
            name_ref, pos = uvarint(buf, pos, body_end)
            value_ref, pos = uvarint(buf, pos, body_end)
            label_names[li] = name_ref
            label_values[li] = value_ref
            li += 1
        c, pos = uvarint(buf, pos, body_end)
        prev_maxt = 0
        prev_ref = 0
        for j in range(c):
            if j == 0:
                mint, pos = varint(buf, pos, body_end)
                d, pos = uvarint(buf, pos, body_end)
                ref, pos = uvarint(buf, pos, body_end)
                maxt = wrap64(mint + d)
            else:
                d1, pos = uvarint(buf, pos, body_end)
                d2, pos = uvarint(buf, pos, body_end)
                dr, pos = varint(buf, pos, body_end)
                # Chunks out of order or overlapping give negative deltas, stored as 64-bit wrapped uvarints.
                mint = wrap64(prev_maxt + d1)
                maxt = wrap64(mint + d2)
                ref = wrap64(prev_ref + dr)
            if pos < 0:
                return (label_offsets, label_names, label_values, chunk_offsets, chunk_mint, chunk_maxt,
                        chunk_ref, entry_ends, i)
            chunk_mint[ci] = mint
            chunk_maxt[ci] = maxt
            chunk_ref[ci] = ref
            prev_maxt = maxt
            prev_ref = ref
            ci += 1
    label_offsets[n] = li
    chunk_offsets[n] = ci
    return (label_offsets, label_names, label_values, chunk_offsets, chunk_mint, chunk_maxt, chunk_ref,
            entry_ends, -1)


@njit
def put_uvarint(out: U8, pos: int, value: int) -> int:
    v = unsigned64(value)
    while v >= np.uint64(0x80):
        out[pos] = np.uint8((v & np.uint64(0x7F)) | np.uint64(0x80))
        v >>= np.uint64(7)
        pos += 1
    out[pos] = np.uint8(v)
    return pos + 1


@njit
def put_varint(out: U8, pos: int, value: int) -> int:
    x = wrap64(value)
    return put_uvarint(out, pos, wrap64((x << 1) ^ (x >> 63)))


@njit
def put_be32(out: U8, pos: int, value: int) -> int:
    out[pos] = (value >> 24) & 0xFF
    out[pos + 1] = (value >> 16) & 0xFF
    out[pos + 2] = (value >> 8) & 0xFF
    out[pos + 3] = value & 0xFF
    return pos + 4


@njit
def uvarint_len(value: int) -> int:
    v = unsigned64(value)
    n = 1
    while v >= np.uint64(0x80):
        v >>= np.uint64(7)
        n += 1
    return n


@njit
def encode_series_entries(
    start_offset: int,
    label_offsets: I64,
    label_names: I64,
    label_values: I64,
    chunk_offsets: I64,
    chunk_mint: I64,
    chunk_maxt: I64,
    chunk_ref: I64,
) -> tuple[U8, I64]:
    """Encode series entries, each 16-byte aligned in the file, starting at file offset ``start_offset``.

    Returns (bytes, entry file offsets). The output starts with the zero padding needed to reach
    the first 16-byte boundary after ``start_offset``.
    """
    n = label_offsets.shape[0] - 1
    # Upper bound on size: per entry 16 padding + 10 len + 4 crc + varints.
    cap = 0
    for i in range(n):
        cap += 16 + 10 + 4 + 10 + 20 * (label_offsets[i + 1] - label_offsets[i])
        cap += 10 + 30 * (chunk_offsets[i + 1] - chunk_offsets[i])
    out = np.zeros(cap, np.uint8)
    body = np.zeros(64, np.uint8)
    entry_offsets = np.empty(n, np.int64)
    pos = 0
    for i in range(n):
        need = 10 + 20 * (label_offsets[i + 1] - label_offsets[i]) + 10 + 30 * (chunk_offsets[i + 1] - chunk_offsets[i])
        if body.shape[0] < need:
            body = np.zeros(need * 2, np.uint8)
        b = put_uvarint(body, 0, label_offsets[i + 1] - label_offsets[i])
        for j in range(label_offsets[i], label_offsets[i + 1]):
            b = put_uvarint(body, b, label_names[j])
            b = put_uvarint(body, b, label_values[j])
        c0 = chunk_offsets[i]
        b = put_uvarint(body, b, chunk_offsets[i + 1] - c0)
        for j in range(c0, chunk_offsets[i + 1]):
            if j == c0:
                b = put_varint(body, b, chunk_mint[j])
                b = put_uvarint(body, b, chunk_maxt[j] - chunk_mint[j])
                b = put_uvarint(body, b, chunk_ref[j])
            else:
                b = put_uvarint(body, b, chunk_mint[j] - chunk_maxt[j - 1])
                b = put_uvarint(body, b, chunk_maxt[j] - chunk_mint[j])
                b = put_varint(body, b, chunk_ref[j] - chunk_ref[j - 1])
        file_pos = start_offset + pos
        pad = (16 - file_pos % 16) % 16
        pos += pad
        entry_offsets[i] = start_offset + pos
        pos = put_uvarint(out, pos, b)
        out[pos:pos + b] = body[:b]
        crc_start = pos
        pos += b
        pos = put_be32(out, pos, crc32c(out, crc_start, pos))
    return out[:pos], entry_offsets


@njit
def encode_postings_lists(
    list_offsets: I64, refs: I64
) -> tuple[U8, I64]:
    """Encode postings lists (``len be32 ‖ n be32 ‖ refs be32… ‖ crc``) back to back.

    List i holds ``refs[list_offsets[i]:list_offsets[i+1]]``. Returns (bytes, start of each list
    relative to the output).
    """
    k = list_offsets.shape[0] - 1
    total = 12 * k + 4 * refs.shape[0]
    out = np.empty(total, np.uint8)
    starts = np.empty(k, np.int64)
    pos = 0
    for i in range(k):
        cnt = list_offsets[i + 1] - list_offsets[i]
        starts[i] = pos
        pos = put_be32(out, pos, 4 + 4 * cnt)
        crc_start = pos
        pos = put_be32(out, pos, cnt)
        for j in range(list_offsets[i], list_offsets[i + 1]):
            pos = put_be32(out, pos, refs[j])
        pos = put_be32(out, pos, crc32c(out, crc_start, pos))
    return out, starts


@njit
def scan_postings_table(
    buf: U8, pos: int, end: int, count: int
) -> tuple[I64, I64, I64, I64, I64, int]:
    """Parse postings offset table entries (``u8 2 ‖ str name ‖ str value ‖ uvarint offset``).

    Returns (name starts, name ends, value starts, value ends, offsets, status) where status is
    the end position or -1 on truncated / malformed input.
    """
    ns = np.empty(count, np.int64)
    ne = np.empty(count, np.int64)
    vs = np.empty(count, np.int64)
    ve = np.empty(count, np.int64)
    offs = np.empty(count, np.int64)
    for i in range(count):
        if pos >= end or buf[pos] != 2:
            return ns, ne, vs, ve, offs, -1
        pos += 1
        n, pos = uvarint(buf, pos, end)
        if pos < 0 or n < 0 or n > end - pos:
            return ns, ne, vs, ve, offs, -1
        ns[i] = pos
        ne[i] = pos + n
        pos += n
        n, pos = uvarint(buf, pos, end)
        if pos < 0 or n < 0 or n > end - pos:
            return ns, ne, vs, ve, offs, -1
        vs[i] = pos
        ve[i] = pos + n
        pos += n
        o, pos = uvarint(buf, pos, end)
        if pos < 0:
            return ns, ne, vs, ve, offs, -1
        offs[i] = o
    return ns, ne, vs, ve, offs, pos


@njit
def locate_chunk_records(
    seg: U8, offsets: I64, check_crc: bool
) -> tuple[I64, I64, I64, int, int]:
    """Payload spans and encodings of the chunk records at ``offsets`` of one segment, without a copy.

    Returns (starts, ends, encodings, bad, code): ``bad`` is -1 or the index of the first bad record,
    ``code`` 1 = truncated, 2 = CRC mismatch.
    """
    n = offsets.shape[0]
    end = seg.shape[0]
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    encs = np.empty(n, np.int64)
    for i in range(n):
        length, pos = uvarint(seg, offsets[i], end)
        if pos < 0 or length < 0 or length > end - pos - 5:
            return starts, ends, encs, i, 1
        if check_crc and crc32c(seg, pos, pos + 1 + length) != be32(seg, pos + 1 + length):
            return starts, ends, encs, i, 2
        encs[i] = seg[pos]
        starts[i] = pos + 1
        ends[i] = pos + 1 + length
    return starts, ends, encs, -1, 0


@njit
def gather_chunk_records(
    seg: U8, offsets: I64, check_crc: bool, framed: bool = False
) -> tuple[U8, I64, I64, I64, int, int]:
    """Copy the payloads of the chunk records at ``offsets`` of one segment into one buffer.

    With ``framed`` whole records are copied (length, encoding, payload, CRC), so a record can later be
    written out again verbatim; starts/ends still delimit the payloads.
    Returns (buffer, starts, ends, encodings, bad, code) as ``locate_chunk_records``.
    """
    at, until, encs, bad, code = locate_chunk_records(seg, offsets, check_crc)
    if bad >= 0:
        return np.empty(0, np.uint8), at, until, encs, bad, code
    n = offsets.shape[0]
    first = offsets if framed else at  # what is copied of record i: seg[first[i]:last[i]]
    last = until + 4 if framed else until
    total = 0
    for i in range(n):
        total += last[i] - first[i]
    out = np.empty(total, np.uint8)
    starts = np.empty(n, np.int64)
    ends = np.empty(n, np.int64)
    o = 0
    for i in range(n):
        size = last[i] - first[i]
        out[o:o + size] = seg[first[i]:last[i]]
        starts[i] = o + at[i] - first[i]
        ends[i] = starts[i] + until[i] - at[i]
        o += size
    return out, starts, ends, encs, -1, 0


@njit
def scatter_spans(src: U8, starts: I64, ends: I64, out: U8,
                  positions: I64) -> None:
    """``out[positions[i]:…] = src[starts[i]:ends[i]]`` for every i."""
    for i in range(starts.shape[0]):
        length = ends[i] - starts[i]
        out[positions[i]:positions[i] + length] = src[starts[i]:ends[i]]


@njit
def encode_chunk_records(
    encodings: I64, buf: U8, offsets: I64
) -> tuple[U8, I64]:
    """Frame chunks as ``uvarint len ‖ enc ‖ data ‖ crc32c(enc ‖ data)`` records, back to back."""
    k = encodings.shape[0]
    total = 0
    for i in range(k):
        total += offsets[i + 1] - offsets[i] + 10
    out = np.empty(total, np.uint8)
    starts = np.empty(k, np.int64)
    pos = 0
    for i in range(k):
        length = offsets[i + 1] - offsets[i]
        starts[i] = pos
        pos = put_uvarint(out, pos, length)
        crc_start = pos
        out[pos] = encodings[i]
        out[pos + 1:pos + 1 + length] = buf[offsets[i]:offsets[i + 1]]
        pos += 1 + length
        pos = put_be32(out, pos, crc32c(out, crc_start, pos))
    return out[:pos], starts


@njit
def chunk_record_headers(seg: U8, offsets: I64) -> tuple[I64, I64, I64, int]:
    """Encoding, payload length and sample count of each record at ``offsets``, without copying payloads.

    For AggrChunks (0xFF) the sample count is that of the count sub-chunk; for encodings 5 and 6 the 14-bit count of
    HISTOGRAMS.md H11.2. Returns -1 or the index
    of the first record whose header runs past the buffer.
    """
    n = offsets.shape[0]
    end = seg.shape[0]
    encs = np.empty(n, np.int64)
    lens = np.empty(n, np.int64)
    samples = np.zeros(n, np.int64)
    for i in range(n):
        length, pos = uvarint(seg, offsets[i], end)
        if pos < 0 or length < 0 or length > end - pos - 1:
            return encs, lens, samples, i
        enc = int(seg[pos])
        encs[i] = enc
        lens[i] = length
        p = pos + 1
        if enc == 0xFF:
            sub_len, q = uvarint(seg, p, p + length)
            if q < 0 or sub_len < 0:
                return encs, lens, samples, i
            p = q + 1
            if sub_len < 2:
                continue
        if p + 2 <= end:
            # Encodings 5 and 6 (histograms with start timestamps) keep the counter-reset header in the top two bits.
            high = int(seg[p]) & 0x3F if enc == 5 or enc == 6 else int(seg[p])
            samples[i] = (high << 8) | int(seg[p + 1])
    return encs, lens, samples, -1


# Section statuses of the integrity checks below.
SECTION_OK = 0
SECTION_TRUNCATED = 1
SECTION_CRC_MISMATCH = 2


@njit
def check_table_sections(buf: U8, offsets: I64, end: int) -> I64:
    """Status of each ``len be32 ‖ body ‖ crc be32`` section at ``offsets`` of ``buf[:end]`` (one of the
    ``SECTION_*`` values)."""
    n = offsets.shape[0]
    status = np.zeros(n, np.int64)
    for i in range(n):
        off = offsets[i]
        if off < 0 or off > end - 8:
            status[i] = SECTION_TRUNCATED
            continue
        length = be32(buf, off)
        if length > end - off - 8:
            status[i] = SECTION_TRUNCATED
        elif crc32c(buf, off + 4, off + 4 + length) != be32(buf, off + 4 + length):
            status[i] = SECTION_CRC_MISMATCH
    return status


@njit
def walk_series_entries(buf: U8, base: int, align: int) -> tuple[I64, int]:
    """Start of every series entry in the series section ``buf`` (which starts at file offset ``base``),
    found by walking entry after entry over zero padding; entries start on multiples of ``align``.

    Returns (starts in ``buf``, -1 or the position in ``buf`` where the walk found no valid entry).
    """
    end = buf.shape[0]
    starts = np.empty(end // 4 + 1, np.int64)
    n = 0
    pos = 0
    while True:
        while pos < end and buf[pos] == 0:
            pos += 1
        if pos >= end:
            return starts[:n].copy(), -1
        if (base + pos) % align != 0:
            return starts[:n].copy(), pos
        length, p = uvarint(buf, pos, end)
        if p < 0 or length < 0 or length > end - p - 4:
            return starts[:n].copy(), pos
        starts[n] = pos
        n += 1
        pos = p + length + 4


@njit
def check_series_entry_crcs(buf: U8, starts: I64) -> I64:
    """``SECTION_*`` status of the series entries at ``starts`` (each known to lie inside ``buf``)."""
    n = starts.shape[0]
    status = np.zeros(n, np.int64)
    for i in range(n):
        length, p = uvarint(buf, starts[i], buf.shape[0])
        if crc32c(buf, p, p + length) != be32(buf, p + length):
            status[i] = SECTION_CRC_MISMATCH
    return status
