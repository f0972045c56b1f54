"""Standard data sets in their official file formats, read into memory as uint8 tensors.

    load_dataset("cifar10", "data/", "train")        # cifar-10-batches-py/ or cifar-10-python.tar.gz
    load_dataset("stl10", "data/", "unlabeled")      # stl10_binary/*.bin
    load_dataset("emnist-letters", "data/", "test")  # emnist-letters-test-*-ubyte.gz (IDX)

| name                      | files (official)                                  | splits                      |
| cifar10, cifar100         | python pickle batches, or the .tar.gz holding them | train, test                 |
| stl10                     | stl10_binary/{train,test,unlabeled}_X.bin, *_y.bin | train, test, unlabeled,     |
|                           |                                                    | train+unlabeled             |
| mnist                     | {train,t10k}-{images-idx3,labels-idx1}-ubyte[.gz]  | train, test                 |
| emnist-{byclass, bymerge, balanced, letters, digits, mnist} | emnist-SPLIT-{train,test}-...-ubyte[.gz] | train, test |

`download(name, root)` fetches the official archive and checks its MD5 (the sums that
torchvision also uses); nothing is downloaded unless asked.
"""
from __future__ import annotations

import contextlib
import gzip
import hashlib
import pickle
import tarfile
import urllib.request
import zipfile
from pathlib import Path

import numpy as np
import torch

from byol.checkpoint import atomic_path
from byol.data.image_sets import MemoryImages
from byol.data.listing import DataError
from byol.wording import option

EMNIST_SPLITS = ("byclass", "bymerge", "balanced", "letters", "digits", "mnist")
DATASETS = ("cifar10", "cifar100", "stl10", "mnist", *(f"emnist-{s}" for s in EMNIST_SPLITS))

# name -> [(url, file name, md5)]
SOURCES = {
    "cifar10": [("https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz", "cifar-10-python.tar.gz",
                 "c58f30108f718f92721af3b95e74349a")],
    "cifar100": [("https://www.cs.toronto.edu/~kriz/cifar-100-python.tar.gz", "cifar-100-python.tar.gz",
                  "eb9058c3a382ffc7106e4002c42a8d85")],
    "stl10": [("http://ai.stanford.edu/~acoates/stl10/stl10_binary.tar.gz", "stl10_binary.tar.gz",
               "91f7769df0f17e558f3565bffb0c7dfb")],
    "mnist": [(f"https://ossci-datasets.s3.amazonaws.com/mnist/{f}", f, md5) for f, md5 in (
        ("train-images-idx3-ubyte.gz", "f68b3c2dcbeaaa9fbdd348bbdeb94873"),
        ("train-labels-idx1-ubyte.gz", "d53e105ee54ea40749a09fcbcd1e9432"),
        ("t10k-images-idx3-ubyte.gz", "9fb629c4189551a2d022fa330f9573f3"),
        ("t10k-labels-idx1-ubyte.gz", "ec29112dd5afa0611ce80d1b7f02629c"))],
    "emnist": [("https://biometrics.nist.gov/cs_links/EMNIST/gzip.zip", "gzip.zip",
                "58c8d27c78d21e728a6bc7b3cc06412e")],
}


def _find(root: Path, name: str) -> Path | None:
    """`name` in root, or anywhere below it."""
    if (root / name).is_file():
        return root / name
    return next((p for p in sorted(root.rglob(name)) if p.is_file()), None)


def _need(root: Path, names: list[str], dataset: str) -> list[Path]:
    found = [_find(root, n) for n in names]
    missing = [n for n, f in zip(names, found) if f is None]
    if missing:
        raise DataError(f"{dataset}: {', '.join(missing)} not found under {str(root)!r} "
                        f"(`byol download {dataset.split('-')[0]} --root {root}` fetches the official files)")
    return found


# -- CIFAR ---------------------------------------------------------------------------


def _cifar_members(root: Path, folder: str, names: list[str], archive: str) -> list[bytes]:
    """The pickle files, from the extracted folder or straight from the official .tar.gz."""
    tar_path = root if root.is_file() else _find(root, archive)
    if root.is_dir() and all(_find(root, n) for n in names):
        return [_find(root, n).read_bytes() for n in names]
    if tar_path is None:
        raise DataError(f"{folder}/ with {', '.join(names)} (or {archive}) not found under {str(root)!r}")
    with tarfile.open(tar_path) as tar:
        out = {}
        for m in tar:
            base = m.name.rsplit("/", 1)[-1]
            if m.isfile() and base in names:
                out[base] = tar.extractfile(m).read()
    missing = [n for n in names if n not in out]
    if missing:
        raise DataError(f"{tar_path} lacks {', '.join(missing)}")
    return [out[n] for n in names]


# What the official CIFAR batches are made of: dicts, lists, strings and numpy arrays. A pickle
# that names any other callable (a payload: os.system, subprocess.*, eval) is refused unread.
CIFAR_PICKLE_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                        for name in ("_reconstruct", "scalar")} | {
    ("numpy", "ndarray"), ("numpy", "dtype"), ("numpy.core.numeric", "_frombuffer"),
    ("numpy._core.numeric", "_frombuffer"), ("_codecs", "encode")}


class _CifarUnpickler(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) in CIFAR_PICKLE_GLOBALS:
            return super().find_class(module, name)
        raise pickle.UnpicklingError(f"it names {module}.{name}, which no CIFAR batch holds")


def read_cifar_pickle(blob: bytes, source: str) -> dict:
    """A CIFAR batch file's dict, unpickled with only the numpy globals the official files use
    (CIFAR_PICKLE_GLOBALS): a file that would call anything else is refused, never run."""
    import io

    try:
        entry = _CifarUnpickler(io.BytesIO(blob), encoding="latin1").load()
    except Exception as e:  # noqa: BLE001 - a damaged or foreign pickle raises many kinds
        raise DataError(f"{source} is not an official CIFAR batch file and was not read ({e}); fetch the official "
                        "files with `byol download` or give the images as a folder") from None
    if not isinstance(entry, dict):
        raise DataError(f"{source} is not an official CIFAR batch file (it holds {type(entry).__name__}, not a dict)")
    return entry


def load_cifar(root: str | Path, split: str, classes: int = 10) -> MemoryImages:
    root = Path(root)
    if classes == 10:
        files = [f"data_batch_{i}" for i in range(1, 6)] if split == "train" else ["test_batch"]
        folder, archive, meta, key, label_key = "cifar-10-batches-py", "cifar-10-python.tar.gz", \
            "batches.meta", "label_names", "labels"
    else:
        files = ["train"] if split == "train" else ["test"]
        folder, archive, meta, key, label_key = "cifar-100-python", "cifar-100-python.tar.gz", \
            "meta", "fine_label_names", "fine_labels"
    *blobs, meta_blob = _cifar_members(root, folder, files + [meta], archive)
    xs, ys = [], []
    for name, blob in zip(files, blobs):
        entry = read_cifar_pickle(blob, f"{root}: {name}")
        try:
            xs.append(np.asarray(entry["data"], dtype=np.uint8).reshape(-1, 3, 32, 32))
            ys.extend(int(y) for y in entry[label_key])
        except (KeyError, ValueError, TypeError) as e:
            raise DataError(f"{root}: {name} is not an official CIFAR batch file ({type(e).__name__}: {e})") from None
        if len(ys) != sum(len(x) for x in xs):
            raise DataError(f"{root}: {name} holds {len(xs[-1])} images but another number of labels")
    try:
        names = [str(n) for n in read_cifar_pickle(meta_blob, f"{root}: {meta}")[key]]
    except KeyError:
        raise DataError(f"{root}: {meta} has no {key!r}; it is not the official CIFAR meta file") from None
    return MemoryImages(torch.from_numpy(np.concatenate(xs)), torch.tensor(ys, dtype=torch.long), names)


# -- STL-10 ----------------------------------------------------------------------------


def _stl_images(path: Path) -> np.ndarray:
    raw = np.fromfile(path, dtype=np.uint8)
    if raw.size % (3 * 96 * 96):
        raise DataError(f"{path}: size {raw.size} is not a whole number of 96x96x3 images")
    # stored column-major per channel: (N, 3, 96, 96) with rows and columns swapped
    return raw.reshape(-1, 3, 96, 96).transpose(0, 1, 3, 2)


def load_stl10(root: str | Path, split: str) -> MemoryImages:
    root = Path(root)
    parts = split.split("+")
    xs, ys = [], []
    for part in parts:
        if part not in ("train", "test", "unlabeled"):
            raise DataError(f"stl10: unknown split {part!r}; use train, test, unlabeled or train+unlabeled")
        (x_path,) = _need(root, [f"{part}_X.bin"], "stl10")
        x = _stl_images(x_path)
        if part == "unlabeled":
            y = np.full(len(x), -1, dtype=np.int64)
        else:
            (y_path,) = _need(root, [f"{part}_y.bin"], "stl10")
            y = np.fromfile(y_path, dtype=np.uint8).astype(np.int64) - 1  # labels are 1..10
            if len(y) != len(x):
                raise DataError(f"stl10: {x_path} has {len(x)} images but {y_path} {len(y)} labels")
        xs.append(x)
        ys.append(y)
    names_file = _find(root, "class_names.txt")
    names = names_file.read_text().split() if names_file else [str(i) for i in range(10)]
    return MemoryImages(torch.from_numpy(np.ascontiguousarray(np.concatenate(xs))),
                        torch.from_numpy(np.concatenate(ys)), names)


# -- MNIST and EMNIST (IDX) -------------------------------------------------------------


def read_idx(path: Path) -> np.ndarray:
    """An IDX file (gzip'd or not): magic 0x0000 0x08 ndim, big-endian int32 dims, uint8 data."""
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        data = gzip.decompress(data)
    if len(data) < 4 or data[0] != 0 or data[1] != 0 or data[2] != 0x08:
        raise DataError(f"{path} is not a uint8 IDX file")
    ndim = data[3]
    dims = np.frombuffer(data, dtype=">i4", count=ndim, offset=4)
    arr = np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim)
    if arr.size != int(np.prod(dims)):
        raise DataError(f"{path}: expected {int(np.prod(dims))} values for shape {tuple(dims)}, found {arr.size}")
    return arr.reshape(tuple(int(d) for d in dims))


def load_idx_pair(root: Path, images: str, labels: str, dataset: str, transpose: bool,
                  label_offset: int = 0) -> MemoryImages:
    def pick(name):
        return _find(root, name + ".gz") or _find(root, name)

    paths = [pick(images), pick(labels)]
    if None in paths:
        _need(root, [n + ".gz" for n, p in zip((images, labels), paths) if p is None], dataset)
    x, y = read_idx(paths[0]), read_idx(paths[1]).astype(np.int64) - label_offset
    if transpose:  # EMNIST stores each image transposed
        x = x.transpose(0, 2, 1)
    if len(x) != len(y):
        raise DataError(f"{dataset}: {paths[0]} has {len(x)} images but {paths[1]} {len(y)} labels")
    classes = [str(c) for c in range(int(y.max()) + 1)]
    return MemoryImages(torch.from_numpy(x[:, None].copy()), torch.from_numpy(y), classes)


def load_dataset(name: str, root: str | Path, split: str) -> MemoryImages:
    """A standard data set's split, as uint8 images (N, C, H, W) and labels (-1: unlabeled)."""
    root = Path(root)
    if not root.exists():
        raise DataError(f"{name}: data path {str(root)!r} does not exist")
    if name in ("cifar10", "cifar100"):
        if split not in ("train", "test"):
            raise DataError(f"{name}: unknown split {split!r}; use train or test")
        return load_cifar(root, split, 10 if name == "cifar10" else 100)
    if name == "stl10":
        return load_stl10(root, split)
    if split not in ("train", "test"):
        raise DataError(f"{name}: unknown split {split!r}; use train or test")
    if name == "mnist":
        prefix = "train" if split == "train" else "t10k"
        return load_idx_pair(root, f"{prefix}-images-idx3-ubyte", f"{prefix}-labels-idx1-ubyte", name, False)
    if name.startswith("emnist-") and name[7:] in EMNIST_SPLITS:
        s = name[7:]
        return load_idx_pair(root, f"emnist-{s}-{split}-images-idx3-ubyte", f"emnist-{s}-{split}-labels-idx1-ubyte",
                             name, True, label_offset=1 if s == "letters" else 0)  # letters: labels 1..26
    raise DataError(f"unknown dataset {name!r}; choose one of folder, {', '.join(DATASETS)}")


# -- download ---------------------------------------------------------------------------


def md5sum(path: Path) -> str:
    h = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(1 << 20), b""):
            h.update(chunk)
    return h.hexdigest()


def download(name: str, root: str | Path) -> Path:
    """Fetch the official files of `name` into root, check their MD5, and unpack archives.

    A file already there with the right checksum is not fetched again; a wrong one is
    replaced. A download that fails or does not match leaves no file behind, and no folder
    that this call made. The error names the offline alternatives: the same files copied into
    root by other means (they are checked the same way), or the images as a labeled folder.
    """
    key = "emnist" if name.startswith("emnist") else name
    if key not in SOURCES:
        raise DataError(f"no download for {name!r}; available: {', '.join(SOURCES)}")
    root = Path(root)
    made = [p for p in (root, *root.parents) if not p.exists()]
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError as e:
        raise DataError(f"--root {str(root)!r}: cannot make that folder ({e.strerror or e}"
                        f"{': a file is in the way' if isinstance(e, (FileExistsError, NotADirectoryError)) else ''}); "
                        "give a writable folder") from None
    try:
        for url, filename, md5 in SOURCES[key]:
            target = root / filename
            there = target.is_file()
            if not (there and md5sum(target) == md5):
                fetch(url, target, md5, name, wrong=there)
            if filename.endswith((".tar.gz", ".tgz")):
                with tarfile.open(target) as tar:
                    tar.extractall(root, filter="data")
            elif filename.endswith(".zip"):
                with zipfile.ZipFile(target) as z:
                    z.extractall(root)
    except DataError:
        for folder in made:  # innermost first; a folder that holds anything is kept
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise
    return root


def fetch(url: str, target: Path, md5: str, name: str, wrong: bool = False) -> None:
    """`url` into `target` through a temporary file (atomic_path), kept only if its MD5 is `md5`.
    wrong: a file is at `target` already whose MD5 is not `md5` (said if the download fails)."""
    try:
        with atomic_path(target) as tmp:
            with urllib.request.urlopen(url, timeout=60) as response, open(tmp, "wb") as out:
                while chunk := response.read(1 << 20):
                    out.write(chunk)
            got = md5sum(tmp)
            if got != md5:
                raise DataError(f"{url}: MD5 {got} does not match the expected {md5}")
    except OSError as e:
        reason = getattr(e, "reason", None) or e.strerror or e
        if wrong:
            raise DataError(f"{target} is there, but its MD5 is {md5sum(target)}, not {md5}: it is damaged, unfinished "
                            f"or another file, and the download from {url} failed ({reason}). Replace it with the "
                            f"official {target.name} copied by other means and run this again, or give the images as "
                            f"a labeled folder: {option('data.path', 'FOLDER')} instead of {option('data.dataset', name)}") from None
        raise DataError(f"cannot download {url} ({reason}). Without internet: copy {target.name} (MD5 {md5}) into "
                        f"{target.parent} by other means and run this again, or give the images as a labeled folder "
                        f"(one sub-folder per class) or a .tar of one: {option('data.path', 'FOLDER')} instead of "
                        f"{option('data.dataset', name)}") from None


def match_channels(images: MemoryImages, channels: int) -> MemoryImages:
    """1-channel sets for a 3-channel network are repeated; RGB for a 1-channel one is grey."""
    x = images.images
    if x.shape[1] == channels:
        return images
    if channels == 3:
        x = x.expand(-1, 3, -1, -1).contiguous()
    else:
        w = torch.tensor([0.2989, 0.587, 0.114]).view(1, 3, 1, 1)
        x = (x.float() * w).sum(1, keepdim=True).round().clamp(0, 255).to(torch.uint8)
    return MemoryImages(x, images.labels, images.classes, images.skipped)
