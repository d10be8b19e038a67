"""The SAM 2.1 checkpoints an image bakes in: Meta's files, each checked against the sum pinned
in sam-server/checkpoints.sha256 before it lands in the image (the image's build runs this).

    python -m sam_server.checkpoints <destination> [--models all|<model>[,<model>...]] [--offered <dir>]

A file already in --offered (a directory of the build context, for builders without internet)
is taken from there instead of Meta's server. Either way a file whose sha256 is not the pinned
one stops the build with one line naming the file and both sums. Standard library only: the
build runs it before the server's environment exists.
"""

from __future__ import annotations

import argparse
import hashlib
import sys
import urllib.request
from pathlib import Path
from typing import Callable, Iterable, Optional

from sam_server.config import MODELS

# Meta's release of the SAM 2.1 checkpoints (September 28, 2024), as facebookresearch/sam2's
# checkpoints/download_ckpts.sh fetches them.
BASE_URL = "https://dl.fbaipublicfiles.com/segment_anything_2/092824"
SUMS_FILE = Path(__file__).resolve().parent.parent / "checkpoints.sha256"
ALL = "all"
CHUNK = 1 << 20
DOWNLOAD_TIMEOUT_SECONDS = 60


class CheckpointError(Exception):
    """One line: which file or model, and what was expected."""


def read_sums(text: str) -> dict[str, str]:
    """{file name: sha256} from `sha256sum` output (comment lines skipped)."""
    sums = {}
    for line in text.splitlines():
        if line.strip() and not line.startswith("#"):
            digest, name = line.split(maxsplit=1)
            sums[name.lstrip("*")] = digest
    return sums


def chosen_files(models: str) -> list[str]:
    """Checkpoint file names of `models`: `all`, or model names separated by commas or spaces."""
    names = [name for name in models.replace(",", " ").split() if name]
    if names == [ALL]:
        return [file for _, file in MODELS.values()]
    unknown = [name for name in names if name not in MODELS]
    if unknown or not names:
        raise CheckpointError(f"SAM_MODELS={models!r} names no SAM 2.1 model{' ' + ', '.join(unknown) if unknown else ''}; "
                              f"expected {ALL} or some of {', '.join(MODELS)}")
    return [MODELS[name][1] for name in names]


def _copy_hashing(source: Iterable[bytes], target: Path) -> str:
    digest = hashlib.sha256()
    with target.open("wb") as out:
        for chunk in source:
            digest.update(chunk)
            out.write(chunk)
    return digest.hexdigest()


def _chunks(stream) -> Iterable[bytes]:
    while chunk := stream.read(CHUNK):
        yield chunk


def _download(url: str) -> Iterable[bytes]:
    with urllib.request.urlopen(url, timeout=DOWNLOAD_TIMEOUT_SECONDS) as response:
        yield from _chunks(response)


def place(file: str, destination: Path, expected: str, offered: Optional[Path] = None,
          download: Callable[[str], Iterable[bytes]] = _download) -> str:
    """Put `file` into `destination` once its sum is `expected`; where it came from."""
    local = offered / file if offered else None
    source = str(local) if local and local.is_file() else f"{BASE_URL}/{file}"
    partial = destination / f"{file}.partial"
    try:
        if local and local.is_file():
            with local.open("rb") as stream:
                actual = _copy_hashing(_chunks(stream), partial)
        else:
            actual = _copy_hashing(download(source), partial)
    except OSError as error:
        partial.unlink(missing_ok=True)
        raise CheckpointError(f"{file}: could not read {source} ({error}); expected internet access to Meta's "
                              "server or the file in the build argument SAM_CHECKPOINTS_DIR's directory") from None
    if actual != expected:
        partial.unlink()
        raise CheckpointError(f"{file} from {source} has sha256 {actual}; expected {expected} "
                              "(sam-server/checkpoints.sha256)")
    partial.rename(destination / file)
    return source


def main(argv: Optional[list[str]] = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("destination", type=Path)
    parser.add_argument("--models", default=ALL, help=f"{ALL} or model names, e.g. sam2.1-tiny,sam2.1-large")
    parser.add_argument("--offered", type=Path, help="a directory that may already hold some of the files")
    args = parser.parse_args(argv)
    try:
        sums = read_sums(SUMS_FILE.read_text())
        files = chosen_files(args.models)
        args.destination.mkdir(parents=True, exist_ok=True)
        for file in files:
            if file not in sums:
                raise CheckpointError(f"{file} has no pinned sum; expected a line for it in sam-server/checkpoints.sha256")
            print(f"{file}: {place(file, args.destination, sums[file], args.offered)}", flush=True)
    except CheckpointError as error:
        print(f"sam-server checkpoints: {error}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
