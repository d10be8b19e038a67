"""Fast tests of the deploy-time SAM self-test (reconciler/sam_selftest.py) and the sizes it
compares, against the in-memory Label Studio of tests/test_reconciler_unit.py and the SAM
answers of tests/sam_fakes.py."""

from __future__ import annotations

import io
import re

import pytest
from PIL import Image

from reconciler.contract import parse_desired_state
from reconciler.errors import ReconcileError
from reconciler.sam_selftest import (
    CONCURRENT_PREDICTIONS, ROUNDS_BUDGET_SECONDS, SHARED_PREDICTOR, SIMULTANEOUS_ROUNDS,
)
from reconciler.sam_sizes import image_size, rle_values
from tests.live_services import png_bytes
from tests.sam_fakes import LOST_IMAGE, FakeSam, brush_rle, image_side
from tests.test_reconciler_unit import FakeLabelStudio, desired, run, sam_project

CLICKS_ALONE = CONCURRENT_PREDICTIONS


def _fruit(fake: FakeLabelStudio, images: int = 6, **document_changes) -> dict:
    fake.objects["fruit"] = images
    return {**desired(projects=[sam_project(True)]), **document_changes}


def _failure(fake: FakeLabelStudio) -> str:
    with pytest.raises(ReconcileError) as failed:
        run(fake, _fruit(fake))
    message = str(failed.value)
    assert message.startswith('project "Fruit": SAM self-test failed: ') and "\n" not in message
    return message


def test_sam_self_test_asks_like_the_labeling_ui_and_prints_the_latency():
    fake = FakeLabelStudio()
    lines = run(fake, _fruit(fake))
    [line] = [line for line in lines if "SAM self-test" in line]
    sizes = ", ".join(f"{image_side(task)}x{image_side(task)}" for task in range(1001, 1003))
    assert re.fullmatch(rf'project "Fruit": SAM self-test: masks of each image\'s own size \({sizes}\); first click '
                        rf"\d+\.\d\d s \(download and embedding\), 2 simultaneous clicks {SIMULTANEOUS_ROUNDS} times in "
                        r"\d+\.\d s, slowest \d+\.\d\d s", line), line
    # Each image alone, then both at once, round after round.
    assert len(fake.sam.contexts) == CLICKS_ALONE + SIMULTANEOUS_ROUNDS * CONCURRENT_PREDICTIONS
    # A smart keypoint and a smart rectangle, in percent of the image, on the image's real size.
    context = fake.sam.contexts[0]["result"]
    assert [r["type"] for r in context] == ["keypointlabels", "rectanglelabels"]
    assert [r["from_name"] for r in context] == ["tag2", "tag3"] and {r["to_name"] for r in context} == {"image"}
    assert {(r["original_width"], r["original_height"]) for r in fake.sam.contexts[0]["result"]} <= {
        (image_side(task), image_side(task)) for task in range(1001, 1003)}


@pytest.mark.parametrize(("behaviour", "detail", "cause"), [
    ("unreachable", "", "backend unreachable from Label Studio at http://sam:9090 (HTTPConnectionPool"),
    ("timeout", "", "timeout: the backend did not answer in time (HTTPConnectionPool(host='sam', port=9090): "
                    "Read timed out."),
    ("empty", "", "empty result: the backend answered task 1001 without a brush mask ([])"),
    ("fails", "HTTPError: 401 Client Error: Unauthorized for url: http://label-studio:80/tasks/1001/presign/"
              "?fileuri=czM6Ly9iL2ZydWl0LzEwMDEucG5n",
     "the backend's image download got 401 Unauthorized from http://label-studio:80/tasks/1001/presign/"
     "?fileuri=czM6Ly9iL2ZydWl0LzEwMDEucG5n (the backend's LABEL_STUDIO_API_KEY is not a token Label Studio accepts)"),
    ("fails", "HTTPError: 403 Client Error: Forbidden for url: http://minio:9000/b/fruit/1001.png?X-Amz-Signature=x",
     "the backend's image download got 403 Forbidden from http://minio:9000/b/fruit/1001.png"),
    ("fails", "HTTPError: 404 Client Error: Not Found for url: http://other:8080/tasks/1001/presign/?fileuri=x",
     "got 404 Not Found from http://other:8080/tasks/1001/presign/?fileuri=x (not found: the object is gone, or the "
     "backend's LABEL_STUDIO_URL points at another Label Studio)"),
    ("fails", "Exception: Label Studio Task ID is required for cloud storage files",
     "the backend image predates label-studio-ml-backend's task-aware downloads (April 2024)"),
    ("fails", LOST_IMAGE,
     f"the backend's predictor lost its image to another request ({LOST_IMAGE}): {SHARED_PREDICTOR}"),
], ids=["unreachable", "timeout", "empty", "wrong-token", "store-refuses", "wrong-url", "old-build", "lost-image"])
def test_a_broken_sam_backend_fails_the_run_with_one_line_naming_the_cause(behaviour, detail, cause):
    fake = FakeLabelStudio()
    fake.sam = FakeSam(behaviour, detail)
    assert cause in _failure(fake)


def test_masks_of_another_image_among_simultaneous_clicks_name_the_shared_predictor():
    fake = FakeLabelStudio()
    fake.sam = FakeSam("racy")
    assert _failure(fake).endswith(
        f"SAM self-test failed: task 1001's mask has 81 pixels but its image is 8x8 (64), among 2 simultaneous "
        f"clicks (round 1 of {SIMULTANEOUS_ROUNDS}): {SHARED_PREDICTOR}")


def test_a_race_that_shows_in_a_late_round_is_caught_there_and_the_rounds_stop():
    fake = FakeLabelStudio()
    fake.sam = FakeSam("racy", racy_from_round=5)
    assert f"(round 5 of {SIMULTANEOUS_ROUNDS})" in _failure(fake)
    assert len(fake.sam.contexts) == CLICKS_ALONE + 5 * CONCURRENT_PREDICTIONS


def test_against_a_slow_backend_no_round_starts_once_the_rounds_have_taken_their_budget():
    fake = FakeLabelStudio()
    # Each round's two clicks take 2 x 6 s of the fake's clock: the third round ends past 30 s.
    fake.sam = FakeSam(click_seconds=ROUNDS_BUDGET_SECONDS / 5)
    [line] = [line for line in run(fake, _fruit(fake)) if "SAM self-test" in line]
    assert "2 simultaneous clicks 3 times in 36.0 s, slowest " in line, line
    assert len(fake.sam.contexts) == CLICKS_ALONE + 3 * CONCURRENT_PREDICTIONS


def test_a_500_whose_backend_detail_says_the_predictor_lost_its_image_is_named_a_race():
    """The backend asked directly, while someone else clicks, answers with the example's error."""
    fake = FakeLabelStudio()
    fake.sam = FakeSam("fails-together", LOST_IMAGE, racy_from_round=2)
    assert _failure(fake).endswith(
        f"SAM self-test failed: task 1001 among 2 simultaneous clicks (round 2 of {SIMULTANEOUS_ROUNDS}): the "
        f"backend's predictor lost its image to another request ({LOST_IMAGE}): {SHARED_PREDICTOR}")


def test_a_500_only_among_simultaneous_clicks_is_named_a_race_when_the_backend_answers_it_alone():
    fake = FakeLabelStudio()
    fake.sam = FakeSam("fails-together")
    message = _failure(fake)
    assert message.endswith(f"where the same click alone got its mask: {SHARED_PREDICTOR}"), message
    assert f"task 1001 among 2 simultaneous clicks (round 1 of {SIMULTANEOUS_ROUNDS}): the backend failed on " \
           "/predict (500 Server Error: INTERNAL SERVER ERROR for url: http://sam:9090/predict)" in message


def test_an_image_label_studio_cannot_serve_is_named_with_its_url_form():
    fake = FakeLabelStudio()
    fake.sam = FakeSam(download_status=404)
    with pytest.raises(ReconcileError, match=re.escape(
            "SAM self-test failed: Label Studio answered 404 for task 1001's image at "
            "http://label-studio:80/tasks/1001/presign/?fileuri=czM6Ly9iL2ZydWl0LzEwMDEucG5n (s3://b/fruit/1001.png)")):
        run(fake, _fruit(fake))


def test_a_sam_project_without_tasks_is_reported_not_failed():
    fake = FakeLabelStudio()
    lines = run(fake, _fruit(fake, images=0))
    assert ('project "Fruit": SAM self-test: no tasks yet; nothing to predict on (tested on the next run with tasks)'
            in lines)


def test_with_self_test_warn_a_broken_backend_is_a_warning_and_the_run_goes_on():
    fake = FakeLabelStudio()
    fake.sam = FakeSam("unreachable")
    lines = run(fake, _fruit(fake, samSelfTest="warn"))
    [warning] = [line for line in lines if "SAM self-test" in line]
    assert warning.startswith('project "Fruit": SAM self-test failed: backend unreachable')
    assert warning.endswith("(warning only: sam.selfTest is warn)")
    assert "invite link: available (kept out of logs)" in lines


def test_an_unknown_self_test_mode_is_refused():
    with pytest.raises(ReconcileError, match="samSelfTest is 'skip'; expected one of fail, warn"):
        parse_desired_state({**desired(), "samSelfTest": "skip"})


def test_every_project_is_synced_before_sam_is_waited_for():
    """Labeling can start while the backend still loads its model."""
    fake = FakeLabelStudio({"kagglecatsanddogs": 3})
    document = _fruit(fake)
    # The SAM project comes first: yet the project after it is synced before SAM is connected.
    document["projects"].append(desired()["projects"][0])
    lines = run(fake, document)
    synced = max(i for i, line in enumerate(lines) if ": synced " in line)
    connected = next(i for i, line in enumerate(lines) if ": ml backend http://sam:9090: created" in line)
    assert synced < connected, lines


def test_image_sizes_are_read_from_png_and_jpeg_headers():
    jpeg = io.BytesIO()
    Image.new("RGB", (37, 21)).save(jpeg, format="JPEG")
    assert image_size(jpeg.getvalue()) == (37, 21)
    assert image_size(png_bytes(3, side=13)) == (13, 13)
    assert image_size(b"GIF89a\x01\x00\x01\x00") is None


@pytest.mark.parametrize(("width", "height"), [(1, 1), (9, 5), (64, 48)])
def test_brush_rle_of_the_sdk_is_measured_without_it(width, height):
    count, covered = rle_values(brush_rle(width, height))
    assert count == width * height * 4
    assert covered == (3 * height // 4 - height // 4) * (3 * width // 4 - width // 4) * 4


def test_a_truncated_rle_is_refused():
    with pytest.raises(ValueError, match="ends early"):
        rle_values(brush_rle(9, 5)[:-3])
