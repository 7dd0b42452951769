"""The 1,000 ImageNet-1k class names, shipped with kres: what a model with ImageNet-1k weights
(timm's, torchvision's, Keras Applications', all in the same class order) calls its outputs.
``imagenet1k_classes.txt`` says in its header where the names come from (timm, Apache-2.0).

>>> kres.data.imagenet.imagenet1k_classes()[:2]
('tench, Tinca tinca', 'goldfish, Carassius auratus')
"""

import functools
from importlib import resources

CLASSES_FILE = "imagenet1k_classes.txt"


@functools.lru_cache(maxsize=None)
def imagenet1k_classes() -> tuple:
    """The class names in class-index order (each the WordNet lemmas of its synset)."""
    text = resources.files("kres.data").joinpath(CLASSES_FILE).read_text(encoding="utf-8")
    return tuple(line for line in text.splitlines() if line and not line.startswith("#"))
