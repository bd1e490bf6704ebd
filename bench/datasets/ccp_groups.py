"""CCP with its 59 classes grouped into 7 person and garment groups (``ccp-groups``,
``ccp-mini-groups``): a label set a network can learn from a few dozen photos.

The mapping (every CCP class in exactly one group; ``null`` is the background):

=============  =====================================================================
group          CCP classes
=============  =====================================================================
background     null
skin           skin
hair           hair
upper          blazer blouse bodysuit bra cape cardigan coat dress hoodie intimate
               jacket jumper romper shirt suit sweater sweatshirt swimwear t-shirt
               top vest
lower          jeans leggings panties pants shorts skirt socks stockings tights
shoes          boots clogs flats heels loafers pumps sandals shoes sneakers wedges
accessories    accessories bag belt bracelet earrings glasses gloves hat necklace
               purse ring scarf sunglasses tie wallet watch
=============  =====================================================================

Full-body garments (dress, romper, bodysuit, suit, swimwear) count as ``upper``, as in
the person-parsing sets that split a person into head, upper and lower body; legwear
(socks, stockings, tights) counts as ``lower``.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np

from bench.datasets.ccp import CCPDataset, CCPMiniDataset
from bench.datasets.types import DatasetError, DatasetInfo

GROUPS: dict[str, tuple[str, ...]] = {
    "background": ("null",),
    "skin": ("skin",),
    "hair": ("hair",),
    "upper": ("blazer", "blouse", "bodysuit", "bra", "cape", "cardigan", "coat", "dress", "hoodie", "intimate",
              "jacket", "jumper", "romper", "shirt", "suit", "sweater", "sweatshirt", "swimwear", "t-shirt", "top",
              "vest"),
    "lower": ("jeans", "leggings", "panties", "pants", "shorts", "skirt", "socks", "stockings", "tights"),
    "shoes": ("boots", "clogs", "flats", "heels", "loafers", "pumps", "sandals", "shoes", "sneakers", "wedges"),
    "accessories": ("accessories", "bag", "belt", "bracelet", "earrings", "glasses", "gloves", "hat", "necklace",
                    "purse", "ring", "scarf", "sunglasses", "tie", "wallet", "watch"),
}
PALETTE = np.array([[0, 0, 0], [250, 200, 160], [110, 60, 20], [220, 30, 60], [40, 70, 200], [40, 160, 60],
                    [250, 200, 0]], np.uint8)


def group_lut(class_names: tuple[str, ...], ignore_index: int | None, where: str) -> np.ndarray:
    """A 256-entry table: CCP class index -> group index (the ignore index stays itself)."""
    group_of = {name: g for g, names in enumerate(GROUPS.values()) for name in names}
    missing = [n for n in class_names if n not in group_of]
    if missing:
        raise DatasetError(f"{where}: class(es) {', '.join(missing)} belong to no group of ccp_groups.GROUPS")
    lut = np.full(256, 255 if ignore_index is None else ignore_index, np.uint8)
    lut[: len(class_names)] = [group_of[n] for n in class_names]
    return lut


def _grouped_info(info: DatasetInfo, name: str) -> DatasetInfo:
    return DatasetInfo(name=name, class_names=tuple(GROUPS), palette=PALETTE, ignore_index=info.ignore_index,
                       citation=info.citation + " Classes grouped by segbench (bench/datasets/ccp_groups.py).")


class CCPGroupsDataset(CCPDataset):
    """Clothing Co-Parsing in place, its 59 classes grouped into 7 (see the module's table);
    options as ``ccp``."""

    def __init__(self, root: str | Path, **options):
        super().__init__(root, **options)
        self._lut = group_lut(self._info.class_names, self._info.ignore_index, self.where)
        self._info = _grouped_info(self._info, "ccp-groups")

    def decode_label(self, path: Path) -> np.ndarray:
        return self._lut[super().decode_label(path)]


class CCPMiniGroupsDataset(CCPMiniDataset):
    """The shipped CCP sample with its classes grouped into 7 person and garment groups
    (the default dataset); options as ``ccp-mini``."""

    def __init__(self, root: str | Path | None = None, scale: float = 1.0):
        super().__init__(root, scale)
        self._lut = group_lut(self._info.class_names, self._info.ignore_index, self.where)
        self._info = _grouped_info(self._info, "ccp-mini-groups")

    def decode_label(self, path: Path) -> np.ndarray:
        return self._lut[super().decode_label(path)]
