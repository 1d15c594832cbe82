"""bench/plot.py (the scale run's PNG, standard library only) and scale.py's curve math."""
import os
import struct
import sys
import zlib

import pytest

BENCH = os.path.join(os.path.dirname(__file__), "..", "..", "bench")
sys.path.insert(0, os.path.abspath(BENCH))
import plot  # noqa: E402
import scale  # noqa: E402


def _decode(png):
    """(width, height, rows of RGB bytes) of an 8-bit RGB, filter-0 PNG; checks the CRCs."""
    assert png[:8] == b"\x89PNG\r\n\x1a\n"
    pos, chunks = 8, []
    while pos < len(png):
        length, = struct.unpack(">I", png[pos:pos + 4])
        kind, data = png[pos + 4:pos + 8], png[pos + 8:pos + 8 + length]
        crc, = struct.unpack(">I", png[pos + 8 + length:pos + 12 + length])
        assert crc == zlib.crc32(kind + data) & 0xFFFFFFFF
        chunks.append((kind, data))
        pos += 12 + length
    assert [k for k, _ in chunks][0] == b"IHDR" and chunks[-1][0] == b"IEND"
    width, height, depth, colour, _, _, _ = struct.unpack(">IIBBBBB", chunks[0][1])
    assert (depth, colour) == (8, 2)
    raw = zlib.decompress(b"".join(d for k, d in chunks if k == b"IDAT"))
    stride = 1 + 3 * width
    rows = [raw[i * stride:(i + 1) * stride] for i in range(height)]
    assert all(r[0] == 0 for r in rows)
    return width, height, [r[1:] for r in rows]


def test_png_round_trips_pixels():
    canvas = plot.Canvas(7, 5)
    canvas.set(0, 0, (1, 2, 3))
    canvas.set(6, 4, (250, 0, 9))
    canvas.set(7, 0, (9, 9, 9))          # outside: ignored
    width, height, rows = _decode(canvas.png())
    assert (width, height) == (7, 5)
    assert rows[0][:3] == bytes((1, 2, 3))
    assert rows[4][18:21] == bytes((250, 0, 9))
    assert rows[2][:3] == bytes(plot.WHITE)


def test_line_covers_both_ends_and_every_column():
    canvas = plot.Canvas(20, 10)
    canvas.line(2, 8, 17, 3, plot.BLACK)
    lit = {(x, y) for y in range(10) for x in range(20) if canvas.get(x, y) == plot.BLACK}
    assert (2, 8) in lit and (17, 3) in lit
    assert {x for x, _ in lit} == set(range(2, 18))


@pytest.mark.parametrize("value,top", [(0, 1), (0.3, 0.5), (1, 1), (7, 10), (230, 500),
                                       (1000, 1000), (1001, 2000), (8.4, 10)])
def test_axis_top_is_a_round_number_at_or_above(value, top):
    assert plot.nice_max(value) == pytest.approx(top)


def test_points_map_into_the_box():
    box = (10, 20, 100, 50)
    (x0, y0), (x1, y1) = plot.to_pixels([(0, 0), (1000, 10)], box, 1000, 10)
    assert (x0, y0) == (10, 70) and (x1, y1) == (110, 20)


def test_panel_draws_each_series_in_its_colour():
    canvas = plot.Canvas(400, 200)
    red, blue = (200, 40, 40), (30, 90, 200)
    plot.panel(canvas, (0, 0, 400, 200), [(red, [(1, 100), (50, 120)]),
                                          (blue, [(1, 5), (50, 5)])])
    colours = {canvas.get(x, y) for x in range(400) for y in range(200)}
    assert red in colours and blue in colours and plot.BLACK in colours


def test_scale_checkpoints_and_windows():
    assert scale.checkpoints_for(1000) == [10, 50, 100, 250, 500, 750, 1000]
    assert scale.checkpoints_for(60) == [10, 50, 60]
    starts = [100.0] * 10 + [500.0] * 80 + [130.0, 120.0] * 5
    assert scale.window_median(starts, True) == 100.0
    assert scale.window_median(starts, False) == 125.0


def test_root_helpers_are_found_by_their_lock_files(tmp_path):
    """The bench counts a root's shared processes (netd, podd) by the "<pid> <start time>"
    their lock files hold; a reused pid (another start time) is not counted."""
    import versus
    from nsPod.store.state import process_start_time
    me = os.getpid()
    (tmp_path / "network").mkdir()
    (tmp_path / "warm").mkdir()
    (tmp_path / "network" / "netd.lock").write_text(f"{me} {process_start_time(me)}\n")
    (tmp_path / "warm" / "podd.x.lock").write_text(f"{me} {process_start_time(me) + 1}\n")
    (tmp_path / "warm" / "podd.log").write_text("not a lock")
    assert versus._locked_pids(str(tmp_path)) == {me}
    assert me in versus.root_helpers(str(tmp_path))
    assert versus.root_helpers(str(tmp_path), exclude={me}) == {}
    (tmp_path / "network" / "netd.lock").write_text(f"{me} {process_start_time(me) + 1}\n")
    assert versus._locked_pids(str(tmp_path)) == set()


def test_panel_clips_values_above_a_given_top():
    canvas = plot.Canvas(300, 200)
    red = (200, 40, 40)
    plot.panel(canvas, (0, 0, 300, 200), [(red, [(0, 10), (10, 5000), (20, 10)])], y_top=20)
    top_row = 20    # the box starts 20 pixels down
    assert red in {canvas.get(x, top_row) for x in range(300)}
    assert red not in {canvas.get(x, y) for x in range(300) for y in range(top_row)}
