"""A minimal line plot as a PNG, with the standard library only (zlib + struct).

Canvas: an RGB image with lines and digits; panel(): axes from 0, a line per series, the
axes' maxima written in a 3x5 digit font. Enough for bench/scale.py's curve; matplotlib is not
needed (and not installed on the machine this runs on).
"""
import struct
import zlib

WHITE = (255, 255, 255)
BLACK = (0, 0, 0)
GREY = (210, 210, 210)

# 3x5 glyphs, rows top to bottom, 3 bits a row (4 = left column).
GLYPHS = {
    "0": (7, 5, 5, 5, 7), "1": (2, 6, 2, 2, 7), "2": (7, 1, 7, 4, 7), "3": (7, 1, 7, 1, 7),
    "4": (5, 5, 7, 1, 1), "5": (7, 4, 7, 1, 7), "6": (7, 4, 7, 5, 7), "7": (7, 1, 1, 1, 1),
    "8": (7, 5, 7, 5, 7), "9": (7, 5, 7, 1, 7), ".": (0, 0, 0, 0, 2), " ": (0, 0, 0, 0, 0),
}


class Canvas:
    def __init__(self, width, height, background=WHITE):
        self.width = width
        self.height = height
        self.rows = [bytearray(bytes(background) * width) for _ in range(height)]

    def set(self, x, y, colour):
        if 0 <= x < self.width and 0 <= y < self.height:
            self.rows[y][3 * x:3 * x + 3] = bytes(colour)

    def get(self, x, y):
        return tuple(self.rows[y][3 * x:3 * x + 3])

    def line(self, x0, y0, x1, y1, colour):
        """Bresenham, both ends included."""
        x0, y0, x1, y1 = round(x0), round(y0), round(x1), round(y1)
        dx, dy = abs(x1 - x0), -abs(y1 - y0)
        sx, sy = (1 if x0 < x1 else -1), (1 if y0 < y1 else -1)
        err = dx + dy
        while True:
            self.set(x0, y0, colour)
            if x0 == x1 and y0 == y1:
                return
            e2 = 2 * err
            if e2 >= dy:
                err += dy
                x0 += sx
            if e2 <= dx:
                err += dx
                y0 += sy

    def text(self, x, y, string, colour=BLACK, scale=2):
        """Digits and '.' at (x, y) top-left; other characters are skipped as blanks."""
        for ch in string:
            for row, bits in enumerate(GLYPHS.get(ch, GLYPHS[" "])):
                for col in range(3):
                    if bits & (4 >> col):
                        for dx in range(scale):
                            for dy in range(scale):
                                self.set(x + col * scale + dx, y + row * scale + dy, colour)
            x += 4 * scale

    def png(self):
        raw = b"".join(b"\x00" + bytes(row) for row in self.rows)   # filter 0 per row
        return (b"\x89PNG\r\n\x1a\n"
                + _chunk(b"IHDR", struct.pack(">IIBBBBB", self.width, self.height, 8, 2, 0, 0, 0))
                + _chunk(b"IDAT", zlib.compress(raw, 9))
                + _chunk(b"IEND", b""))


def _chunk(kind, data):
    return (struct.pack(">I", len(data)) + kind + data
            + struct.pack(">I", zlib.crc32(kind + data) & 0xFFFFFFFF))


def nice_max(value):
    """The smallest 1, 2 or 5 x 10^k at or above value (an axis' top); 1 for nothing."""
    if value <= 0:
        return 1
    step = 1
    while step * 10 <= value:
        step *= 10
    while step > value:
        step /= 10
    for m in (1, 2, 5, 10):
        if m * step >= value:
            return m * step
    return 10 * step


def to_pixels(points, box, x_max, y_max):
    """Data points (x, y) from 0..max into pixel coordinates inside box (x, y, w, h)."""
    bx, by, bw, bh = box
    return [(bx + x / x_max * bw, by + bh - y / y_max * bh) for x, y in points]


def _label(value):
    return f"{value:g}" if value < 1e6 else str(int(value))


def panel(canvas, area, series, margin=50, y_top=None):
    """Axes in area (x, y, w, h) and one polyline per (colour, [(x, y)...]) series; each axis
    runs from 0 to a round number at or above the largest value (or y_top), written at its
    end; values above the y axis' top are drawn at the top."""
    ax, ay, aw, ah = area
    box = (ax + margin, ay + 20, aw - margin - 20, ah - 50)
    bx, by, bw, bh = box
    xs = [x for _, pts in series for x, _ in pts]
    ys = [y for _, pts in series for _, y in pts]
    x_max = nice_max(max(xs, default=1))
    y_max = nice_max(y_top if y_top is not None else max(ys, default=1))
    for i in range(1, 5):   # grid at quarters
        canvas.line(bx, by + bh * i / 4, bx + bw, by + bh * i / 4, GREY)
        canvas.line(bx + bw * i / 4, by, bx + bw * i / 4, by + bh, GREY)
    canvas.line(bx, by, bx, by + bh, BLACK)
    canvas.line(bx, by + bh, bx + bw, by + bh, BLACK)
    canvas.text(ax + 4, by, _label(y_max))
    canvas.text(bx - 12, by + bh + 6, "0")
    label = _label(x_max)
    canvas.text(bx + bw - 8 * len(label), by + bh + 6, label)
    for colour, points in series:
        pixels = to_pixels([(x, min(y, y_max)) for x, y in points], box, x_max, y_max)
        if len(pixels) == 1:
            canvas.set(round(pixels[0][0]), round(pixels[0][1]), colour)
        for (x0, y0), (x1, y1) in zip(pixels, pixels[1:]):
            canvas.line(x0, y0, x1, y1, colour)
