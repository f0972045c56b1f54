"""The run folder (train.out_dir) and who writes it: the checks before a run writes anything
(names the file system takes, a writable place, no link or special file where the run writes, not
inside the training data, no other run using it, a checkpoint only with --resume), the lock that
keeps one run in it, its files written by one process (the plan's rank 0), and the list of
images every process skipped."""
from __future__ import annotations

import contextlib
import os
from contextlib import contextmanager
from pathlib import Path

import yaml

from byol.checkpoint import OutputError, atomic_write_text, check_output_file
from byol.config import Config, ConfigError, to_dict
from byol.data.listing import SKIPPED_DIR_ENV
from byol.evaluation.report import REPORT_FILES
from byol.training.facts import Launch
from byol.training.plan import launch_rank
from byol.wording import option

# Every file a run writes in its folder (train.out_dir), each a regular file or none (check_output_file)
RUN_FILES = ("config.yaml", "summary.json", "knn.json", "embeddings.npz", "backbone.safetensors", "plan.json",
             "checkpoints/last.ckpt", ".byol-run.lock", *REPORT_FILES)
# ... and the folders it writes into, each a real folder or none: a link would carry the files out of the run
RUN_FOLDERS = ("checkpoints", "csv", "tensorboard", ".skipped")


def check_start(cfg: Config, resume: bool, launch: Launch) -> Path:
    """The checks before the data is read: the run folder (check_run_folder, whose lock only this
    launch's rank 0 probes), then the MLflow URI. Returns the checkpoint path."""
    last = check_run_folder(cfg, resume, launch_rank(launch, cfg.train.devices))
    if cfg.log.mlflow_uri:
        from byol.tracking import check_tracking_uri

        check_tracking_uri(cfg.log.mlflow_uri)
    return last


def check_run_folder(cfg: Config, resume: bool, rank: int = 0) -> Path:
    """Refuses a name too long for the file system, a run folder inside the training data, a run
    over an existing one without --resume, a --resume with nothing to resume, a folder that
    cannot be written, a link or special file where the run writes, and a folder that another
    run is using. Returns the checkpoint path."""
    out = Path(cfg.train.out_dir)
    check_path_length(out / "checkpoints" / "last.ckpt", "train.out_dir")
    data = cfg.data.path and os.path.realpath(cfg.data.path)
    if data and cfg.data.dataset in ("folder", "video", "pairs") and os.path.isdir(data) and \
            os.path.commonpath([data, os.path.realpath(out)]) == data:
        raise ConfigError(f"train.out_dir {str(out)!r} is inside data.path {cfg.data.path!r}: the run's own images "
                          "(report plots, previews) would be read as training images next time; choose a run "
                          "folder outside the data")
    last = check_checkpoint(out, resume)
    check_writable(out, "train.out_dir")
    for name in RUN_FOLDERS:
        check_run_subfolder(out / name)
    for name in RUN_FILES:  # a link there would be followed out of the run folder, a FIFO would block
        try:
            check_output_file(out / name)
        except OutputError as e:
            raise ConfigError(f"train.out_dir: {e}") from None
    if rank == 0:
        with RunFolderLock(out, probe=True):  # another run there is refused before the data is read
            pass
    return last


def check_checkpoint(out: Path, resume: bool) -> Path:
    """A checkpoint in the run folder only with --resume, and one there when resuming; returns
    its path. Checked before the data is read, and again once the run folder's lock is held
    (another run may have written one in between)."""
    last = out / "checkpoints" / "last.ckpt"
    if last.exists() and not resume:
        raise ConfigError(f"{out} already holds a checkpoint ({last}); pass {option('resume')} to continue it, "
                          "or choose another train.out_dir")
    if resume and not last.exists():
        raise ConfigError(f"{option('resume')}: no checkpoint at {last}")
    return last


def check_run_subfolder(folder: Path) -> None:
    """A folder the run writes into is a real folder or none: a symbolic link (even to a folder)
    would carry checkpoints or logs out of the run folder, a file in its place would fail later."""
    if folder.is_symlink():
        raise ConfigError(f"train.out_dir: {str(folder)!r} is a symbolic link; byol writes only inside the run folder "
                          "and never follows a link: remove the link or choose another train.out_dir")
    if folder.exists() and not folder.is_dir():
        raise ConfigError(f"train.out_dir: {str(folder)!r} is not a folder, and the run writes into a folder of that "
                          "name; remove it or choose another train.out_dir")


def check_path_length(path: Path, key: str) -> None:
    """A one-line ConfigError when a name in `path` is over 255 bytes or the whole over 4096
    (Linux's NAME_MAX and PATH_MAX), before anything trips over it."""
    long = next((part for part in path.parts if len(part.encode()) > 255), None)
    if long is not None or len(str(path.absolute()).encode()) > 4095:
        what = (f"a name of {len(long.encode())} bytes" if long is not None else
                f"a path of {len(str(path.absolute()).encode())} bytes with what the run writes in it")
        raise ConfigError(f"{key} {str(path.parent.parent)[:60]!r}...: {what}, over the 255 a name and 4096 a path "
                          f"may have; choose a shorter {option(key)}")


def check_writable(folder: Path, key: str) -> None:
    """A one-line ConfigError unless files can be created in `folder` (or where it would be
    made); probes with a temporary file that is removed, so nothing is left behind."""
    import tempfile

    probe_dir = Path(folder)
    while not probe_dir.exists() and probe_dir != probe_dir.parent:
        probe_dir = probe_dir.parent
    try:
        fd, name = tempfile.mkstemp(dir=probe_dir, prefix=".byol-write-test-")
        os.close(fd)
        os.unlink(name)
    except OSError as e:
        raise ConfigError(f"{key} {str(folder)!r}: cannot write in {str(probe_dir)!r} ({e.strerror}); "
                          f"choose a writable folder with {option(key)}") from None


class RunFolderLock:
    """One run at a time in a run folder: an exclusive lock on `.byol-run.lock` in it, held by rank
    0 from the first file the run writes to its end. It is a POSIX record lock (lockf): the kernel
    releases it when the process ends, however it ends (kill -9 too), and forked data-loading
    workers do not inherit it, so a stale file never blocks a later run or a --resume. A second
    run finds it held and is refused, naming the holder. probe=True only checks a folder that
    exists, and creates nothing."""

    NAME = ".byol-run.lock"
    held: set[str] = set()  # the lock files this process holds (a POSIX lock never blocks its owner)

    def __init__(self, out: Path, probe: bool = False):
        self.path, self.probe, self.fd = Path(out) / self.NAME, probe, None

    def refuse(self, holder: str):
        raise ConfigError(f"{self.path.parent} is in use by another byol run ({holder or 'another process'}); wait "
                          "for it to end or stop it, or choose another train.out_dir")

    def __enter__(self):
        try:
            import fcntl
        except ImportError:  # no POSIX locks (Windows): one writer is the user's to ensure
            return self
        key = os.path.realpath(self.path)
        if key in RunFolderLock.held:
            self.refuse(f"pid {os.getpid()}, this process")
        try:
            check_output_file(self.path)  # a link, a folder, a FIFO: one line
        except OutputError as e:
            raise ConfigError(f"train.out_dir: {e}") from None
        if self.probe and not self.path.is_file():
            return self
        if not self.probe:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        # never through a link, never blocking on a FIFO put there since the check above
        flags = os.O_RDWR | os.O_NOFOLLOW | os.O_NONBLOCK | (0 if self.probe else os.O_CREAT)
        try:
            self.fd = os.open(self.path, flags, 0o644)
        except OSError as e:
            raise ConfigError(f"train.out_dir: {str(self.path)!r} cannot be opened as the run's lock ({e.strerror}); "
                              "remove it") from None
        import stat

        if not stat.S_ISREG(os.fstat(self.fd).st_mode):
            os.close(self.fd)
            self.fd = None
            raise ConfigError(f"train.out_dir: {str(self.path)!r} is not a regular file; remove it")
        try:
            fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError:  # EAGAIN or EACCES: held by another process
            os.close(self.fd)
            self.fd = None
            self.refuse(self.path.read_text(errors="replace").strip())
        if self.probe:
            self.__exit__()
            return self
        import socket

        os.ftruncate(self.fd, 0)
        os.write(self.fd, f"pid {os.getpid()} on {socket.gethostname()}\n".encode())
        RunFolderLock.held.add(key)
        self.key = key
        return self

    def __exit__(self, *exc):
        if self.fd is not None:
            os.close(self.fd)  # closing releases the lock
            self.fd = None
            RunFolderLock.held.discard(getattr(self, "key", None))


@contextmanager
def holding(plan, resume: bool = False):
    """The run folder held for this run (RunFolderLock) on rank 0, which writes its files; once
    held, the checkpoint rule (check_checkpoint) is checked again, since another run may have
    written a checkpoint between the first check and the lock. `plan`: the run's Plan."""
    if plan.rank != 0:
        yield
        return
    out = Path(plan.cfg.train.out_dir)
    with RunFolderLock(out):
        check_checkpoint(out, resume)
        for name in RUN_FOLDERS:
            check_run_subfolder(out / name)
        yield


def write_run_file(plan, name: str, content: str | Config) -> None:
    """The run folder (made where missing) and one file of it, `content` written whole (a Config
    as its config.yaml: every setting the run uses). Rank 0 writes it; the other ranks of a
    multi-process run read nothing from it."""
    if plan.rank != 0:
        return
    out = Path(plan.cfg.train.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    text = yaml.safe_dump(to_dict(content), sort_keys=False) if isinstance(content, Config) else content
    atomic_write_text(out / name, text)


SKIPPED_DIR = ".skipped"  # in the run folder: each process's list of the images it skipped


@contextmanager
def recording_skipped(cfg: Config):
    """Within the block, every process of the run (data workers and the other ranks too, which
    inherit the environment) lists the images it skips in the run folder (record_skipped)."""
    folder = Path(cfg.train.out_dir) / SKIPPED_DIR
    folder.mkdir(parents=True, exist_ok=True)
    before = os.environ.get(SKIPPED_DIR_ENV)
    os.environ[SKIPPED_DIR_ENV] = str(folder)
    try:
        yield
    finally:
        if before is None:
            os.environ.pop(SKIPPED_DIR_ENV, None)
        else:
            os.environ[SKIPPED_DIR_ENV] = before


def skipped_by_processes(out: Path) -> list[str]:
    """The images the run's processes listed as skipped (recording_skipped), each once."""
    paths: list[str] = []
    for f in sorted((Path(out) / SKIPPED_DIR).glob("*.txt")):
        with contextlib.suppress(OSError):
            paths += f.read_text(encoding="utf-8", errors="replace").splitlines()
    return list(dict.fromkeys(p for p in paths if p))
