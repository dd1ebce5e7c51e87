"""Object categories of the synthetic world with realistic metric sizes (torch-free).

Sizes are full extents in metres along the object's local axes: ``length`` (x), ``width`` (y),
``height`` (z, up). Cylinders and spheres use ``length == width == diameter``. ``on`` says where an
object rests: ``"floor"`` or ``"surface"`` (the top of a supporting object whose ``support`` is True).
"""

from __future__ import annotations

import attrs


@attrs.frozen
class Category:
    """One object category. Ranges are ``(min, max)`` in metres; ``color`` is a base RGB in [0,1]."""

    name: str
    shape: str  # "box" | "cylinder" | "sphere"
    length: tuple[float, float]
    width: tuple[float, float]
    height: tuple[float, float]
    on: str = "floor"
    support: bool = False
    color: tuple[float, float, float] = (0.6, 0.6, 0.6)
    plural: str = ""

    @property
    def plural_name(self) -> str:
        """English plural used in counting questions."""
        return self.plural or self.name + "s"


def _c(name, shape, length, width, height, on="floor", support=False, color=(0.6, 0.6, 0.6), plural=""):
    return Category(name, shape, length, width, height, on, support, color, plural)


#: All categories, by name. Cylinders/spheres: length = width = diameter.
CATEGORIES: dict[str, Category] = {
    c.name: c
    for c in [
        _c("bed", "box", (1.9, 2.1), (1.0, 1.8), (0.45, 0.6), support=True, color=(0.75, 0.7, 0.85)),
        _c("sofa", "box", (1.6, 2.3), (0.8, 1.0), (0.7, 0.9), color=(0.35, 0.45, 0.7)),
        _c("table", "box", (1.0, 1.8), (0.7, 1.0), (0.72, 0.78), support=True, color=(0.55, 0.38, 0.22)),
        _c("desk", "box", (1.0, 1.6), (0.55, 0.8), (0.72, 0.76), support=True, color=(0.8, 0.75, 0.6)),
        _c("chair", "box", (0.42, 0.55), (0.42, 0.55), (0.8, 1.0), color=(0.85, 0.3, 0.25)),
        _c("stool", "cylinder", (0.3, 0.4), (0.3, 0.4), (0.45, 0.75), color=(0.9, 0.6, 0.2)),
        _c("cabinet", "box", (0.8, 1.2), (0.4, 0.6), (0.8, 1.0), support=True, color=(0.45, 0.3, 0.2)),
        _c("bookshelf", "box", (0.6, 1.0), (0.25, 0.4), (1.6, 2.0), color=(0.5, 0.35, 0.25), plural="bookshelves"),
        _c("refrigerator", "box", (0.6, 0.8), (0.6, 0.75), (1.6, 1.9), color=(0.92, 0.92, 0.95)),
        _c("nightstand", "box", (0.4, 0.55), (0.35, 0.45), (0.45, 0.6), support=True, color=(0.6, 0.45, 0.3)),
        _c("toilet", "box", (0.38, 0.45), (0.6, 0.75), (0.7, 0.8), color=(0.97, 0.97, 0.97)),
        _c("bathtub", "box", (1.5, 1.8), (0.7, 0.8), (0.5, 0.6), color=(0.9, 0.93, 0.97)),
        _c("washer", "box", (0.58, 0.62), (0.58, 0.65), (0.82, 0.88), color=(0.85, 0.87, 0.9)),
        _c("trash can", "cylinder", (0.25, 0.4), (0.25, 0.4), (0.3, 0.6), color=(0.3, 0.35, 0.3)),
        _c("plant", "cylinder", (0.3, 0.6), (0.3, 0.6), (0.5, 1.5), color=(0.2, 0.6, 0.25)),
        _c("lamp", "cylinder", (0.25, 0.4), (0.25, 0.4), (1.4, 1.8), color=(0.95, 0.9, 0.6)),
        _c("backpack", "box", (0.28, 0.35), (0.18, 0.25), (0.4, 0.5), color=(0.2, 0.3, 0.6)),
        _c("box", "box", (0.3, 0.6), (0.3, 0.5), (0.25, 0.5), color=(0.75, 0.6, 0.4), plural="boxes"),
        _c("ball", "sphere", (0.2, 0.3), (0.2, 0.3), (0.2, 0.3), color=(0.9, 0.2, 0.6)),
        _c("tv", "box", (0.9, 1.4), (0.08, 0.12), (0.55, 0.85), on="surface", color=(0.1, 0.1, 0.12)),
        _c("monitor", "box", (0.5, 0.7), (0.15, 0.22), (0.35, 0.5), on="surface", color=(0.15, 0.15, 0.18)),
        _c("laptop", "box", (0.3, 0.38), (0.22, 0.26), (0.02, 0.03), on="surface", color=(0.6, 0.62, 0.66)),
        _c("microwave", "box", (0.45, 0.55), (0.35, 0.4), (0.27, 0.32), on="surface", color=(0.8, 0.8, 0.82)),
        _c("vase", "cylinder", (0.1, 0.2), (0.1, 0.2), (0.2, 0.4), on="surface", color=(0.3, 0.7, 0.8)),
        _c("globe", "sphere", (0.25, 0.35), (0.25, 0.35), (0.25, 0.35), on="surface", color=(0.2, 0.5, 0.9)),
        _c("pillow", "box", (0.5, 0.7), (0.35, 0.5), (0.12, 0.18), on="surface", color=(0.95, 0.85, 0.7)),
    ]
}

FLOOR_CATEGORIES = tuple(n for n, c in CATEGORIES.items() if c.on == "floor")
SURFACE_CATEGORIES = tuple(n for n, c in CATEGORIES.items() if c.on == "surface")
SHAPES = ("box", "cylinder", "sphere")
