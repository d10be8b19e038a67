import numpy as np
import pytest
from label_studio_sdk.converter.brush import decode_rle

from sam_server.protocol import BadRequest, click, mask_result, prompt, tags

CONFIG = """<View><Image name="img" value="$image"/>
<BrushLabels name="mask" toName="img"><Label value="Fruit"/></BrushLabels>
<KeyPointLabels name="point" toName="img" smart="true"><Label value="Fruit"/></KeyPointLabels>
<RectangleLabels name="box" toName="img" smart="true"><Label value="Fruit"/></RectangleLabels></View>"""


def keypoint(x, y, positive=True):
    return {"type": "keypointlabels", "is_positive": positive, "value": {"x": x, "y": y, "keypointlabels": ["Fruit"]}}


def test_the_label_configs_image_and_brush():
    found = tags(CONFIG)
    assert (found.image_key, found.image_name, found.brush_name) == ("image", "img", "mask")
    with pytest.raises(BadRequest, match="no <Image"):
        tags("<View><Text name='t' value='$text'/></View>")


def test_no_click_is_a_task_being_opened():
    assert click(None) is None and click({"result": []}) is None


def test_keypoints_positive_and_negative_and_the_last_rectangle_in_pixels():
    rectangle = {"type": "rectanglelabels", "value": {"x": 10, "y": 20, "width": 50, "height": 25,
                                                      "rectanglelabels": ["Fruit"]}}
    clicked = click({"result": [keypoint(50, 50), keypoint(10, 90, positive=False), rectangle]})
    found = prompt(clicked, width=200, height=100)
    assert found.points == [(100.0, 50.0), (20.0, 90.0)] and found.point_labels == [1, 0]
    assert found.box == (20.0, 20.0, 120.0, 45.0)
    assert clicked.label == "Fruit"


def test_a_click_without_coordinates_is_a_bad_request():
    with pytest.raises(BadRequest, match="no numeric x, y"):
        prompt(click({"result": [{"type": "keypointlabels", "value": {"keypointlabels": ["Fruit"]}}]}), 10, 10)


def test_the_mask_is_a_brush_rle_of_the_images_size():
    mask = np.zeros((30, 40), dtype=bool)
    mask[5:10, 5:20] = True
    result = mask_result(mask, tags(CONFIG), "Fruit")
    assert (result["original_width"], result["original_height"]) == (40, 30)
    assert (result["from_name"], result["to_name"], result["value"]["brushlabels"]) == ("mask", "img", ["Fruit"])
    pixels = decode_rle(result["value"]["rle"]).reshape(30, 40, 4)[:, :, 3]
    assert ((pixels > 0) == mask).all()
