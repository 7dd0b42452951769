"""Getting checkpoint files: Keras Applications through ``keras.utils.get_file`` (cached under
KERAS_HOME), timm checkpoints through ``huggingface_hub.hf_hub_download`` (cached in the Hugging
Face cache), both verified before use. A file that fails verification is removed from the cache
and never loaded.
"""

import contextlib
import os
import re
import tempfile

from kres.errors import KresError
from kres.files import file_hash
from kres.weights.table import KERAS_BASE_URL

_HEX64 = re.compile(r"^[0-9a-f]{64}$")
_HASH_OVERRIDES = {}


@contextlib.contextmanager
def expected_hash(file_name, file_hash):
    """Within the ``with`` block, expect ``file_hash`` (sha256 if 64 hex digits, else md5) for the
    checkpoint ``file_name`` (a Keras file name such as
    ``"resnet50_weights_tf_dim_ordering_tf_kernels.h5"`` or a timm name such as
    ``"resnet50.a1_in1k"``) instead of the published one: for a re-hosted or re-exported copy.

    >>> with kres.weights.expected_hash("resnet50.a1_in1k", sha256_of_my_copy):
    ...     model = kres.build("resnet50", weights="a1_in1k")
    """
    had, old = file_name in _HASH_OVERRIDES, _HASH_OVERRIDES.get(file_name)
    _HASH_OVERRIDES[file_name] = file_hash.lower()
    try:
        yield
    finally:
        if had:
            _HASH_OVERRIDES[file_name] = old
        else:
            _HASH_OVERRIDES.pop(file_name, None)


def verify(path, expected, what, remove=()):
    """Raises (after removing ``path`` and ``remove`` from the cache) unless the file's hash is
    ``expected`` (sha256 for 64 hex digits, md5 for 32)."""
    algorithm = "sha256" if len(expected) == 64 else "md5"
    got = file_hash(path, algorithm)
    if got != expected.lower():
        size = os.path.getsize(path)
        discard(path, *remove)
        raise KresError(
            f"{what}: the cached file {path!r} ({size} bytes) is corrupt or truncated: its "
            f"{algorithm} is {got}, the published one is {expected}. It was removed from the "
            f"cache and not loaded; run again to download it afresh.")
    return path


def discard(*paths):
    for p in paths:
        with contextlib.suppress(OSError):
            if os.path.lexists(p):
                os.remove(p)


def keras_cache_dir():
    """Where ``keras.utils.get_file`` caches downloads: $KERAS_HOME (default ~/.keras), or
    /tmp/.keras when that is not writable (the same rule as Keras)."""
    base = os.path.expanduser(os.environ.get("KERAS_HOME") or os.path.join("~", ".keras"))
    with contextlib.suppress(OSError):
        os.makedirs(base, exist_ok=True)
    if not os.access(base, os.W_OK):
        base = os.path.join("/tmp" if os.path.isdir("/tmp") else tempfile.gettempdir(), ".keras")
    return base


def keras_file(entry, include_top=True):
    """Path of the Keras Applications file of ``entry`` (downloaded if needed), verified against
    the md5 keras.applications publishes (or an :func:`expected_hash` override)."""
    import keras

    name, published = entry.files[0 if include_top else 1]
    expected = _HASH_OVERRIDES.get(name, published)
    cache_dir = keras_cache_dir()
    target = os.path.join(cache_dir, "models", name)
    what = f"Keras Applications weights for {entry.model}"
    if os.path.exists(target):  # checked first: get_file would silently try to re-download
        verify(target, expected, what)
    url = KERAS_BASE_URL + name
    try:  # returns the cached file (checking its hash again) or downloads and checks it
        return keras.utils.get_file(name, url, cache_subdir="models", file_hash=expected,
                                    cache_dir=cache_dir)
    except ValueError as e:  # get_file's own hash check after a download
        discard(target)
        raise KresError(f"{what}: the download of {url} is corrupt ({e}); it was removed "
                        "from the cache.") from None
    except Exception as e:  # noqa: BLE001 - no network, HTTP errors, ...
        raise KresError(f"{what}: could not download {url} ({e}). Without network access, put "
                        f"the file at {target!r}.") from None


def hub_file(entry):
    """Path of ``model.safetensors`` of ``timm/<model>.<tag>`` from the Hugging Face Hub (or its
    cache; HF_HUB_OFFLINE=1 works). The Hub publishes each file's sha256 (the LFS object id) and
    huggingface_hub names the cached blob by it: the blob must hash to its own name."""
    try:
        from huggingface_hub import hf_hub_download
    except ImportError:
        raise KresError("loading timm weights needs huggingface_hub: pip install "
                        "huggingface-hub") from None
    repo = entry.hub_repo
    try:
        path = hf_hub_download(repo, "model.safetensors")
    except Exception as e:  # noqa: BLE001 - offline and not cached, repository missing, ...
        raise KresError(f"could not fetch {repo}/model.safetensors from the Hugging Face Hub: "
                        f"{type(e).__name__}: {e}") from None
    blob = os.path.realpath(path)
    expected = _HASH_OVERRIDES.get(entry.name)
    if expected is None and _HEX64.match(os.path.basename(blob)):
        expected = os.path.basename(blob)
    if expected is not None:
        verify(blob, expected, f"timm weights {entry.name}", remove=(path,))
    return path
