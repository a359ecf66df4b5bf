"""The flattened-stream index is built in one sort plus a linear pass
(issue 9: inserting into the middle of arrays was quadratic, 8.6 s at
240 k records). Its contents equal a byte-array model of the records
written one after the other (later records win, holes read as zeros), and
8 times the records cost less than 16 times the time.
"""
import random
import time

from hypothesis import given, settings
from hypothesis import strategies as st

from dumpfilter.formats.flattened import FLAT_RECORD, flat_header
from dumpfilter.readers.flattened import FlattenedFile


def _stream(records):
    out = bytearray(flat_header())
    for off, data in records:
        out += FLAT_RECORD.pack(off, len(data)) + data
    out += FLAT_RECORD.pack(-1, -1)
    return bytes(out)


@settings(max_examples=300, deadline=None)
@given(st.lists(st.tuples(st.integers(0, 300), st.integers(0, 40)), max_size=30), st.data())
def test_index_equals_byte_model(tmp_path_factory, recs, data):
    records, model = [], bytearray()
    for i, (off, size) in enumerate(recs):
        payload = bytes((i * 7 + j) % 251 + 1 for j in range(size))
        records.append((off, payload))
        if size:
            if len(model) < off + size:
                model += bytes(off + size - len(model))
            model[off:off + size] = payload
    path = tmp_path_factory.mktemp("flat") / "s"
    path.write_bytes(_stream(records))
    with FlattenedFile(path) as ff:
        assert ff.size == len(model)
        assert ff.pread(0, len(model) + 10) == bytes(model)
        lo = data.draw(st.integers(0, max(0, len(model))))
        hi = data.draw(st.integers(lo, len(model) + 5))
        assert ff.pread(lo, hi - lo) == bytes(model[lo:hi])
        assert ff.written_bytes(0, len(model)) <= len(model)
        segs = list(zip(ff._lo, ff._hi))
        assert all(a < b for a, b in segs) and all(b <= c for (_, b), (c, _) in zip(segs, segs[1:]))


def _makedumpfile_like(n, seed=0):
    """n small records out of logical order, as -F writes them: a data
    record, then its descriptor far below, and now and then a rewrite."""
    rng = random.Random(seed)
    recs, data_pos, desc_pos = [], 1 << 30, 1 << 20
    for i in range(n):
        if i % 2:
            recs.append((desc_pos, b"d" * 24))
            desc_pos += 24
        else:
            size = rng.randrange(16, 64)
            recs.append((data_pos, b"p" * size))
            data_pos += size
    recs.append((0, b"h" * 4096))  # the header, rewritten at the end
    return _stream(recs)


def _open_time(path, repeat=3):
    best = float("inf")
    for _ in range(repeat):
        t0 = time.perf_counter()
        with FlattenedFile(path) as ff:
            ff.nsegments
        best = min(best, time.perf_counter() - t0)
    return best


def test_open_time_is_linear(tmp_path):
    small, big = tmp_path / "small", tmp_path / "big"
    small.write_bytes(_makedumpfile_like(30_000))
    big.write_bytes(_makedumpfile_like(240_000))
    t_small, t_big = _open_time(small), _open_time(big)
    assert t_big < 16 * t_small, (t_small, t_big)
