"""`byol cache SRC DST --max-side N`: a one-time resized copy of an image folder.

Training on photographs decodes every image every epoch; decoding a 4,000-px phone photo
costs as much as many 512-px ones, and the crops a 224-px network sees rarely need more. As
FFCV stores ImageNet with its longer side at most 400-512 px, the cache holds each image
upright (EXIF orientation applied) with its longer side shrunk to `max_side` (bicubic,
antialiased; JPEG and WebP at `quality`); an image already within the bound and upright is
copied byte for byte. Every file keeps its relative path, so the class folders (the labels)
and the file list stay the same.

DST/byol-cache.json says what the folder is (source, max_side, counts, and the size and
modification time of each source a copy was made from); a run on DST says it in its notes.
Each file is written whole or not at all, so an interrupted cache resumes: the same command
again keeps the copies whose source is unchanged, makes again those whose source changed, and
removes those whose source is gone.
"""
from __future__ import annotations

import json
import os
import shutil
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from PIL import Image

from byol.checkpoint import atomic_path, atomic_write_text
from byol.data.decode import decode, orientation, read_header, upright_size
from byol.data.listing import DECODE_ERRORS, BadImages, DataError, is_tar, list_images

MARKER = "byol-cache.json"
QUALITY = 95  # JPEG / WebP quality of the resized copies (FFCV's default is 90)
SAVE_FORMAT = {".jpg": "JPEG", ".jpeg": "JPEG", ".png": "PNG", ".bmp": "BMP", ".gif": "PNG", ".tif": "TIFF",
               ".tiff": "TIFF", ".webp": "WEBP", ".ppm": "PPM", ".pgm": "PPM"}  # GIF frames keep full colour as PNG data


def read_marker(folder: str | Path) -> dict | None:
    """The byol-cache.json of a cache folder, or None for any other folder."""
    try:
        return json.loads((Path(folder) / MARKER).read_text())
    except (OSError, ValueError):
        return None


def cache_one(src: Path, dst: Path, max_side: int, quality: int) -> str:
    """Write src's resized copy to dst: 'resized', or 'copied' (within the bound and upright)."""
    header = read_header(str(src))
    width, height = upright_size(header)
    if max(width, height) <= max_side and orientation(header) == 1:
        header.load()  # a damaged file is skipped here, not copied
        with atomic_path(dst) as tmp:
            shutil.copyfile(src, tmp)
        return "copied"
    gray = header.mode in ("L", "LA", "I", "I;16", "I;16B", "I;16L", "F", "1")
    scale = min(1.0, max_side / max(width, height))
    image = decode(header, str(src), 1 if gray else 3, scale)
    size = (max(1, round(width * scale)), max(1, round(height * scale)))
    if image.size != size:
        image = image.resize(size, Image.Resampling.BICUBIC)
    fmt = SAVE_FORMAT.get(src.suffix.lower(), "PNG")
    with atomic_path(dst) as tmp:
        image.save(tmp, format=fmt, **({"quality": quality} if fmt in ("JPEG", "WEBP") else {}))
    return "resized"


def stamp(path: Path) -> list[int]:
    """What says a source file is the one a copy was made from: its size and modification time."""
    st = os.stat(path)
    return [st.st_size, st.st_mtime_ns]


def check_destination(src: Path, dst: Path) -> None:
    """The cache folder: not the source, not inside it (a run on the source would read the copies
    as a class), not holding it, not a file, and with no symbolic link inside (a write would
    follow it out of the cache)."""
    if dst.exists() and not dst.is_dir():
        raise DataError(f"the cache {str(dst)!r} is a file; give a new or empty folder")
    real_src, real_dst = os.path.realpath(src), os.path.realpath(dst)
    if real_src == real_dst:
        raise DataError(f"the cache {str(dst)!r} is the source folder; give another folder")
    common = os.path.commonpath([real_src, real_dst])
    if common in (real_src, real_dst):
        why = ("a run on the source would read the copies as images" if common == real_src else
               "the copies would be listed among the sources")
        raise DataError(f"the cache {str(dst)!r} is {'inside' if common == real_src else 'around'} the source folder "
                        f"{str(src)!r}: {why}; give a folder outside it")
    if dst.is_symlink():
        raise DataError(f"the cache {str(dst)!r} is a symbolic link; give the real folder")
    for dirpath, dirnames, filenames in os.walk(dst):
        for name in (*dirnames, *filenames):
            if os.path.islink(os.path.join(dirpath, name)):
                raise DataError(f"{os.path.join(dirpath, name)!r} in the cache is a symbolic link: a cache writes only "
                                "inside its folder and never follows a link; remove it")


def write_cache(src: str | Path, dst: str | Path, max_side: int, quality: int = QUALITY,
                threads: int | None = None) -> dict:
    """Resized copies of every image of the folder `src` in `dst` (see the module docstring);
    returns the marker it wrote, with how many files this call resized, copied and found there.
    A run again checks what is there against the sources (size and modification time, kept in
    the marker): a copy whose source changed is made again, a copy whose source is gone is
    removed. Unreadable images are skipped and said, once each; the marker counts every image
    file left out (unreadable, or left out of the listing)."""
    if max_side < 16:
        raise DataError(f"--max-side {max_side}: give at least 16 px (512 keeps what 224-px crops need)")
    if not 1 <= quality <= 100:
        raise DataError(f"--quality {quality}: JPEG and WebP quality is 1 to 100 (95 keeps what training sees)")
    if is_tar(src) and Path(src).is_file():
        raise DataError(f"{str(src)!r} is a tar archive; unpack it, then cache the folder (shards are written from "
                        "the cache with `byol shards`)")
    images = list_images(src)
    dst = Path(dst)
    check_destination(Path(src), dst)
    marker = read_marker(dst)
    source = str(Path(src).resolve())
    if marker is None and dst.exists() and any(dst.iterdir()):
        raise DataError(f"{str(dst)!r} holds files that are not a byol cache; give a new or empty folder")
    if marker is not None and (marker.get("source"), marker.get("max_side")) != (source, max_side):
        raise DataError(f"{str(dst)!r} is a cache of {marker.get('source')!r} at --max-side {marker.get('max_side')}; "
                        "give a new folder for another source or bound")
    made = (marker or {}).get("copies") or {}  # item -> the stamp of the source it was made from
    stale = [item for item in made if item not in set(images.items)]
    for item in stale:  # its source is gone (deleted, moved, renamed): so is the copy
        (dst / item).unlink(missing_ok=True)
    dst.mkdir(parents=True, exist_ok=True)
    state = {"source": source, "max_side": max_side, "quality": quality, "images": len(images), "complete": False,
             "copies": {k: v for k, v in made.items() if k not in stale}}
    atomic_write_text(dst / MARKER, json.dumps(state, indent=1))  # marks the folder as a cache while it is written
    bad = BadImages()

    def one(item: str) -> tuple[str, list[int] | None]:
        source_file = Path(images.root, item)
        try:
            now = stamp(source_file)
            if made.get(item) == now and (dst / item).is_file():
                return "kept", now
            return cache_one(source_file, dst / item, max_side, quality), now
        except (*DECODE_ERRORS, FileNotFoundError) as e:
            (dst / item).unlink(missing_ok=True)  # an older copy of a source that is now unreadable
            bad.report(str(source_file), e)
            return "skipped", None

    with ThreadPoolExecutor(threads or min(8, len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity")
                                            else os.cpu_count() or 1)) as pool:
        results = list(pool.map(one, images.items))
    outcomes = [outcome for outcome, _ in results]
    left_out = [*images.left_out, *bad.paths]
    state = {**state, "skipped": len(left_out), "skipped_paths": left_out[:1000], "complete": True,
             "copies": {item: now for item, (_, now) in zip(images.items, results) if now is not None}}
    atomic_write_text(dst / MARKER, json.dumps(state, indent=1))
    counts = {k: outcomes.count(k) for k in ("resized", "copied", "kept")}
    return {**{k: v for k, v in state.items() if k != "copies"}, **counts, "removed": len(stale)}


def cache_note(path: str) -> list[str]:
    """The note a run on a cache folder says: what it is a copy of, at which bound."""
    marker = read_marker(path)
    if marker is None:
        return []
    done = "" if marker.get("complete") else " (unfinished: run the byol cache command again to complete it)"
    return [f"data.path {path!r} is a resized copy of {marker.get('source')!r}: longer side at most "
            f"{marker.get('max_side')} px (byol cache){done}"]
