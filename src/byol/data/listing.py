"""Where images are: ImageFolder directories and tar archives, listed; their bytes read; and the
files that could not be used, said once and recorded for the run's summary.

Layouts read (the same as torchvision's ImageFolder):
    root/<class>/.../<image>           labeled; class = first folder level under root
    root/<image>                       unlabeled (label -1) when root has no sub-folders
    archive.tar[.gz] with that layout

Files that are no regular file (a FIFO, a device, a dangling link), links back into the folder,
stray images beside class folders and unreadable images are left out, each said once, and
counted (ImageList.left_out, BadImages, record_skipped).
"""
from __future__ import annotations

import contextlib
import os
import re
import sys
import tarfile
import zlib
from dataclasses import dataclass, field
from pathlib import Path

from PIL import Image, UnidentifiedImageError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp", ".ppm", ".pgm",
                    ".npy", ".npz", ".dcm", ".dicom")  # the last four: arrays and DICOM (byol.data.bands)
TAR_SUFFIXES = (".tar", ".tar.gz", ".tgz")


class DataError(ValueError):
    """Data that cannot be used, with a message that names the file or folder."""


def is_image_name(name: str) -> bool:
    return name.lower().endswith(IMAGE_EXTENSIONS)


def natural_key(name: str) -> list:
    """Sort key that orders the numbers in a name by value: frame2 before frame10."""
    return [(0, int(part), "") if part.isdigit() else (1, 0, part) for part in re.split(r"(\d+)", name)]


def is_tar(path: str | Path) -> bool:
    return str(path).lower().endswith(TAR_SUFFIXES)


@dataclass
class ImageList:
    """Where the images are, their labels (-1 when unlabeled) and the class names."""

    root: str
    items: list[str]
    labels: list[int]
    classes: list[str] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)  # image files found and not listed (root/name), each said once

    @property
    def labeled(self) -> bool:
        return bool(self.classes)

    def __len__(self) -> int:
        return len(self.items)

    def subset(self, indices) -> "ImageList":
        """The images at `indices` (in that order), with their labels and the same classes."""
        keep = [int(i) for i in indices]
        return ImageList(self.root, [self.items[i] for i in keep], [self.labels[i] for i in keep], self.classes,
                         self.left_out)


def ends_cleanly(tar: tarfile.TarFile) -> bool:
    """Whether a listed archive (getmembers) ends where tar says an archive ends: nothing but
    zero blocks after its last member. Garbage in a damaged header makes tarfile stop there."""
    tar.fileobj.seek(tar.offset)
    while chunk := tar.fileobj.read(1 << 20):
        if chunk.count(0) != len(chunk):
            return False
    return True


def _label_items(root: str, relpaths: list[str]) -> ImageList:
    """Class = first path component when every image sits in a sub-folder; else unlabeled. With
    two or more class folders, images at the top level beside them (a stray README.jpg) are left
    out with a line, not allowed to turn the whole set unlabeled."""
    relpaths = sorted(relpaths)
    top = [p for p in relpaths if "/" not in p]
    left_out = []
    if top and len({p.split("/")[0] for p in relpaths if "/" in p}) >= 2:
        print(f"byol: {root!r}: {len(top)} image(s) at the top level beside the class folders left out (e.g. "
              f"{top[0]!r}): every image of a labeled set sits in its class folder", file=sys.stderr)
        relpaths = [p for p in relpaths if "/" in p]
        left_out = [f"{root}/{p}" for p in top]
    parts = [p.split("/") for p in relpaths]
    if parts and all(len(p) >= 2 for p in parts):
        classes = sorted({p[0] for p in parts})
        index = {c: i for i, c in enumerate(classes)}
        return ImageList(root, relpaths, [index[p[0]] for p in parts], classes, left_out)
    return ImageList(root, relpaths, [-1] * len(relpaths), [], left_out)


def _strip_common_prefix(names: list[str]) -> list[str]:
    """Tar members often sit under one top folder (train/airplane/1.jpg): drop it."""
    while names and all("/" in n for n in names):
        first = names[0].split("/", 1)[0]
        if all(n.split("/", 1)[0] == first for n in names) and all(n.count("/") >= 2 for n in names):
            names = [n.split("/", 1)[1] for n in names]
        else:
            break
    return names


def _walk_images(path: Path) -> tuple[list[str], int, list[str]]:
    """(relative paths of the image files under `path`, symbolic links skipped, image names that
    are no regular file). Links that lead out of the folder are followed (a class folder may live
    elsewhere); a link that leads back into it (a loop, or a second way to a folder or file listed
    in its own place) is skipped, and no real folder or file is listed twice. Only regular files
    are read: a FIFO would block the reader for ever, a device never ends, a dangling link has
    nothing to read."""
    root = os.path.realpath(path)

    def leads_inside(p: str) -> bool:
        return os.path.islink(p) and os.path.commonpath([root, os.path.realpath(p)]) == root

    rel, links, seen_dirs, seen_files, special = [], 0, set(), set(), []
    for dirpath, dirnames, filenames in os.walk(path, followlinks=True):
        real = os.path.realpath(dirpath)
        if real in seen_dirs:  # reached a second way from outside links
            dirnames[:] = []
            links += 1
            continue
        seen_dirs.add(real)
        kept = []
        for d in sorted(dirnames):
            if d.startswith("."):
                continue
            if leads_inside(os.path.join(dirpath, d)):
                links += 1
            else:
                kept.append(d)
        dirnames[:] = kept
        for f in filenames:
            full = os.path.join(dirpath, f)
            if not is_image_name(f) or f.startswith("."):
                continue
            if not os.path.isfile(full):  # follows links: False for a FIFO, device, socket, dangling link
                special.append(os.path.relpath(full, path))
                continue
            if leads_inside(full) or os.path.realpath(full) in seen_files:
                links += 1
                continue
            seen_files.add(os.path.realpath(full))
            rel.append(os.path.relpath(full, path).replace(os.sep, "/"))
    return rel, links, special


def list_images(path: str | Path) -> ImageList:
    """Scan a folder (recursively) or a tar archive for images."""
    path = Path(path)
    if not path.exists():
        raise DataError(f"data path {str(path)!r} does not exist")
    if path.is_file():
        if not is_tar(path):
            raise DataError(f"data path {str(path)!r} is a file but not a .tar/.tar.gz archive")
        try:
            with tarfile.open(path) as tar:
                names = [m.name.lstrip("./") for m in tar.getmembers() if m.isfile() and is_image_name(m.name)]
                damaged = not ends_cleanly(tar)
        except (tarfile.TarError, OSError, EOFError, zlib.error) as e:
            raise DataError(f"cannot read archive {str(path)!r}: {e}") from None
        if damaged:  # tarfile stops listing at a damaged header as if the archive ended there
            raise DataError(f"archive {str(path)!r} is damaged at byte {tar.offset}: only the {len(names)} image(s) "
                            "before that point can be listed, the rest would be left out silently; re-create "
                            "or repair the archive")
        if len(set(names)) < len(names):  # tar keeps every copy of a name; its last one is the file
            print(f"byol: {str(path)!r}: {len(names) - len(set(names))} member name(s) appear more than once; each "
                  "is read once, its last copy (as tar extracts it)", file=sys.stderr)
            names = list(dict.fromkeys(names))
        if not names:
            raise DataError(f"archive {str(path)!r} holds no image files ({', '.join(IMAGE_EXTENSIONS)})")
        stripped = _strip_common_prefix(names)
        images = _label_items(str(path), stripped)
        prefix = {s: n for s, n in zip(stripped, names)}
        images.items = [prefix[s] for s in images.items]
        return images
    if not path.is_dir():
        raise DataError(f"data path {str(path)!r} is neither a folder nor a .tar archive (a device, FIFO or "
                        "socket); give a folder of images or a .tar of one")
    rel, links, special = _walk_images(path)
    if special:
        print(f"byol: {str(path)!r}: {len(special)} image name(s) skipped that are no regular file (a dangling "
              f"link, FIFO or device; e.g. {special[0]!r})", file=sys.stderr)
    if links:
        print(f"byol: {str(path)!r}: {links} symbolic link(s) skipped: they lead back into the folder or to a "
              "file already listed; each image is read once, labeled by the folder it is in", file=sys.stderr)
    if not rel:
        what = "is empty" if not any(path.iterdir()) else f"has no image files ({', '.join(IMAGE_EXTENSIONS)})"
        raise DataError(f"data folder {str(path)!r} {what}")
    images = _label_items(str(path), rel)
    images.left_out = [*(f"{path}/{p}" for p in special), *images.left_out]
    return images


# ---------------------------------------------------------------------------
# Reading bytes, and what could not be read


class BadImages:
    """Counts unreadable files and says so once per file and process (the kNN bank and the
    training stream may both meet it): one line on stderr with its path."""

    said: set[str] = set()  # the paths already reported in this process

    def __init__(self):
        self.paths: list[str] = []

    def report(self, path: str, error: Exception) -> None:
        if path not in self.paths:
            self.paths.append(path)
        if path not in BadImages.said:
            BadImages.said.add(path)
            print(f"byol: skipping unreadable image {path} ({unreadable_reason(error)})", file=sys.stderr, flush=True)
            record_skipped(path)

    def __len__(self) -> int:
        return len(self.paths)


SKIPPED_DIR_ENV = "BYOL_SKIPPED_DIR"  # where processes (data workers too) list what they skipped


def record_skipped(path: str) -> None:
    """With BYOL_SKIPPED_DIR set (a run, for its summary), one line with `path` in this process's
    own file there (host-pid.txt: no two processes write one file); data workers are processes of
    their own, whose counts the run would not see otherwise."""
    folder = os.environ.get(SKIPPED_DIR_ENV)
    if not folder:
        return
    import socket

    with contextlib.suppress(OSError), open(os.path.join(folder, f"{socket.gethostname()}-{os.getpid()}.txt"),
                                            "a", encoding="utf-8") as f:
        f.write(path.replace("\n", " ") + "\n")


def unreadable_reason(error: Exception) -> str:
    """Why a file could not be decoded, in a few words (PIL names the in-memory buffer otherwise)."""
    text = str(error).splitlines()[0] if str(error) else type(error).__name__
    if isinstance(error, UnidentifiedImageError) and text.startswith("cannot identify image file"):
        return "not in an image format PIL can read"
    return text


DECODE_ERRORS = (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError)


def read_all_bytes(images: ImageList) -> list[bytes]:
    if is_tar(images.root) and Path(images.root).is_file():
        wanted = set(images.items)
        found: dict[str, bytes] = {}
        with tarfile.open(images.root) as tar:
            for m in tar:
                name = m.name.lstrip("./")
                if name in wanted:
                    found[name] = tar.extractfile(m).read()
        return [found[i] for i in images.items]
    return [Path(images.root, i).read_bytes() for i in images.items]
