import hashlib

import pytest

from sam_server import checkpoints
from sam_server.checkpoints import BASE_URL, CheckpointError, chosen_files, main, place, read_sums
from sam_server.config import MODELS

TINY = MODELS["sam2.1-tiny"][1]
CONTENT = b"weights of a checkpoint"
SUM = hashlib.sha256(CONTENT).hexdigest()


def test_every_model_has_a_pinned_sum():
    sums = read_sums(checkpoints.SUMS_FILE.read_text())
    assert set(sums) == {file for _, file in MODELS.values()}
    assert all(len(digest) == 64 and int(digest, 16) >= 0 for digest in sums.values())


def test_the_models_are_named_as_the_server_names_them():
    assert chosen_files("all") == [file for _, file in MODELS.values()]
    assert chosen_files("sam2.1-tiny,sam2.1-large") == [TINY, MODELS["sam2.1-large"][1]]
    assert chosen_files("sam2.1-tiny sam2.1-small") == [TINY, MODELS["sam2.1-small"][1]]
    with pytest.raises(CheckpointError, match=r"SAM_MODELS='sam2.1-huge' names no SAM 2.1 model sam2.1-huge; "
                                              r"expected all or some of sam2.1-tiny, "):
        chosen_files("sam2.1-huge")


def test_a_download_lands_only_with_its_pinned_sum(tmp_path):
    asked = []

    def download(url):
        asked.append(url)
        return iter([CONTENT[:5], CONTENT[5:]])

    assert place(TINY, tmp_path, SUM, download=download) == f"{BASE_URL}/{TINY}"
    assert asked == [f"{BASE_URL}/{TINY}"] and (tmp_path / TINY).read_bytes() == CONTENT
    elsewhere = tmp_path / "elsewhere"
    elsewhere.mkdir()
    with pytest.raises(CheckpointError) as failed:
        place(TINY, elsewhere, "0" * 64, download=lambda url: iter([b"something else"]))
    assert str(failed.value).startswith(f"{TINY} from {BASE_URL}/{TINY} has sha256 ")
    assert "expected " + "0" * 64 in str(failed.value)
    # Nothing half-checked is left where the image would take it from.
    assert list(elsewhere.iterdir()) == []


def test_an_offered_file_is_taken_instead_of_downloading_and_checked_the_same(tmp_path):
    offered, destination = tmp_path / "offered", tmp_path / "checkpoints"
    offered.mkdir()
    destination.mkdir()
    (offered / TINY).write_bytes(CONTENT)

    def no_download(url):
        raise AssertionError(f"downloaded {url}")

    assert place(TINY, destination, SUM, offered, no_download) == str(offered / TINY)
    assert (destination / TINY).read_bytes() == CONTENT
    (offered / TINY).write_bytes(b"a truncated copy")
    with pytest.raises(CheckpointError, match=f"{TINY} from {offered / TINY} has sha256 "):
        place(TINY, tmp_path, SUM, offered, no_download)


def test_an_unreachable_server_is_one_line_saying_what_to_do(tmp_path, capsys):
    def unreachable(url):
        raise OSError("Network is unreachable")

    with pytest.raises(CheckpointError) as failed:
        place(TINY, tmp_path, SUM, download=unreachable)
    assert str(failed.value) == (f"{TINY}: could not read {BASE_URL}/{TINY} (Network is unreachable); expected "
                                 "internet access to Meta's server or the file in the build argument "
                                 "SAM_CHECKPOINTS_DIR's directory")
    assert main([str(tmp_path), "--models", "sam2.1-huge"]) == 1
    [line] = capsys.readouterr().err.splitlines()
    assert line.startswith("sam-server checkpoints: SAM_MODELS='sam2.1-huge' names no SAM 2.1 model")
