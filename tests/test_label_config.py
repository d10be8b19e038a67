"""Labeling configs: the plan's verdict (components/label_config.py) held to Label Studio
1.23.2's own `validate_label_config` on a corpus of good and broken configs.

Label Studio's validator runs in a child process of the test environment's Python with
Django's default settings: it needs settings configured to import, and nothing it checks
reads them (the schema, the name checks and the SDK's tag checks are pure functions), so
its verdict is the one a project create or update gets from the server.
"""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap

import pytest

from components import PROJECT_ROOT
from components.label_config import label_config_problem, label_studio_refusal
from components.settings import ConfigError, parse_settings
from tests.conftest import changed_at
from tests.test_settings import stack_values

IMAGE = '<Image name="image" value="$image"/>'


def choices(inner: str) -> str:
    return f'<Choices name="choice" toName="image">{inner}</Choices>'


ACCEPTED = {
    "two choices": f'<View>{IMAGE}' + choices('<Choice value="Cat"/><Choice value="Dog"/>') + '</View>',
    "one choice": f'<View>{IMAGE}' + choices('<Choice value="Cat"/>') + '</View>',
    "two choices tags with one choice each": f'<View>{IMAGE}<Choices name="a" toName="image"><Choice value="x"/>'
                                             '</Choices><Choices name="b" toName="image"><Choice value="y"/>'
                                             '</Choices></View>',
    "dynamic choices": f'<View>{IMAGE}<Choices name="choice" toName="image" value="$options"/></View>',
    "labels with one label": '<View><Text name="text" value="$text"/><Labels name="ner" toName="text">'
                             '<Label value="PER"/></Labels></View>',
    "rectangle labels": f'<View>{IMAGE}<RectangleLabels name="box" toName="image"><Label value="Car"/>'
                        '</RectangleLabels></View>',
    "text area": f'<View>{IMAGE}<TextArea name="caption" toName="image" rows="3"/></View>',
    "number": f'<View>{IMAGE}<Number name="count" toName="image" min="0"/></View>',
    "nested views and a header": f'<View><Header value="Pick one"/><View style="display: flex">{IMAGE}'
                                 '' + choices('<Choice value="A"/>') + '</View></View>',
    "image list": '<View><Image name="pages" valueList="$pages"/><Choices name="c" toName="pages">'
                  '<Choice value="ok"/></Choices></View>',
    "comment": f'<View><!-- a note -->{IMAGE}' + choices('<Choice value="A"/>') + '</View>',
    "choice values that read as numbers": f'<View>{IMAGE}' + choices('<Choice value="1"/><Choice value="2"/>') + '</View>',
    "video speeds": '<View><Video name="video" value="$video" defaultPlaybackSpeed="1.5" minPlaybackSpeed="0.5"/>'
                    '<Choices name="c" toName="video"><Choice value="ok"/></Choices></View>',
    "several targets": f'<View>{IMAGE}<Image name="other" value="$other"/>'
                       '<Choices name="c" toName="image,other"><Choice value="ok"/></Choices></View>',
    "choices in a nested view of choices": f'<View>{IMAGE}<Choices name="c" toName="image"><View>'
                                           '<Choice value="a"/></View></Choices></View>',
    # Label Studio stores a config without a <View> root (the schema only looks under View);
    # the stack refuses it on its own rule (test below).
    "no view root": '<Choices name="c" toName="c"><Choice value="a"/></Choices>',
}
REFUSED = {
    "choices without a choice": f'<View>{IMAGE}' + choices('') + '</View>',
    "labels without a label": '<View><Text name="text" value="$text"/><Labels name="ner" toName="text"/></View>',
    "choice without a value": f'<View>{IMAGE}' + choices('<Choice/>') + '</View>',
    "label without a value": '<View><Text name="t" value="$t"/><Labels name="l" toName="t"><Label/></Labels></View>',
    "not well-formed": f'<View>{IMAGE}<Choices name="c" toName="image"></View>',
    "empty": "",
    "dtd": f'<!DOCTYPE View [<!ENTITY x "y">]><View>{IMAGE}</View>',
    "duplicate names": f'<View>{IMAGE}<Choices name="image" toName="image"><Choice value="a"/></Choices></View>',
    "missing target": f'<View>{IMAGE}<Choices name="c" toName="picture"><Choice value="a"/></Choices></View>',
    "space after the comma in toName": f'<View>{IMAGE}<Image name="other" value="$other"/>'
                                       '<Choices name="c" toName="image, other"><Choice value="ok"/></Choices></View>',
    "a name that reads as a number": '<View><Image name="image" value="$image"/>'
                                     '<Choices name="1" toName="image"><Choice value="a"/></Choices></View>',
    "image without a name": '<View><Image value="$image"/></View>',
    "image with value and valueList": '<View><Image name="i" value="$i" valueList="$is"/></View>',
    "text area without a target": '<View><TextArea name="caption"/></View>',
    "number without a target": f'<View>{IMAGE}<Number name="count"/></View>',
    "a lone choice beside dynamic choices": f'<View>{IMAGE}<Choices name="a" toName="image"><Choice value="x"/>'
                                            '</Choices><Choices name="b" toName="image" value="$options"/></View>',
    "choice text that reads as a number": f'<View>{IMAGE}' + choices('<Choice value="a">5</Choice>') + '</View>',
    "an attribute ending in name repeats a name": f'<View>{IMAGE}<Image name="other" value="$o" filename="image"/>'
                                                  '</View>',
    "video speed out of range": '<View><Video name="video" value="$video" defaultPlaybackSpeed="20"/></View>',
    "video speed not a number": '<View><Video name="video" value="$video" minPlaybackSpeed="fast"/></View>',
    "video minimum above default": '<View><Video name="video" value="$video" defaultPlaybackSpeed="1" '
                                   'minPlaybackSpeed="2"/></View>',
}
REPOSITORY_CONFIGS = {f"label_configs/{path.name}": path.read_text()
                      for path in sorted((PROJECT_ROOT / "label_configs").glob("*.xml"))}
CORPUS = {**REPOSITORY_CONFIGS, **ACCEPTED, **REFUSED}

_LABEL_STUDIO_VERDICTS = textwrap.dedent("""
    import json, sys
    from django.conf import settings
    settings.configure()
    from rest_framework.exceptions import ValidationError
    from label_studio.core.label_config import validate_label_config
    verdicts = {}
    for name, text in json.load(sys.stdin).items():
        try:
            validate_label_config(text)
            verdicts[name] = None
        except ValidationError as error:
            verdicts[name] = str(error.detail)
    json.dump(verdicts, sys.stdout)
""")


@pytest.fixture(scope="module")
def label_studio_verdicts() -> dict:
    """Label Studio's refusal (None: accepted) of each config in the corpus."""
    done = subprocess.run([sys.executable, "-c", _LABEL_STUDIO_VERDICTS], input=json.dumps(CORPUS),
                          capture_output=True, text=True, timeout=300, check=True)
    return json.loads(done.stdout)


@pytest.mark.parametrize("name", CORPUS)
def test_the_plan_judges_each_config_as_label_studio_does(label_studio_verdicts, name):
    ours = label_studio_refusal(CORPUS[name])
    theirs = label_studio_verdicts[name]
    assert (ours is None) == (theirs is None), f"ours: {ours!r}; Label Studio: {theirs!r}"


def test_the_corpus_holds_what_its_names_say(label_studio_verdicts):
    assert {name for name, verdict in label_studio_verdicts.items() if verdict is None} == {
        *REPOSITORY_CONFIGS, *ACCEPTED}


def test_the_stack_also_wants_a_view_root():
    assert label_studio_refusal(ACCEPTED["no view root"]) is None
    assert label_config_problem(ACCEPTED["no view root"]) == "is not a labeling config; expected a <View> root element"


def test_a_choices_without_a_choice_stops_the_plan_with_one_line(tmp_path, monkeypatch):
    from components.settings import labeling

    (tmp_path / "label_configs").mkdir()
    (tmp_path / "label_configs" / "broken.xml").write_text(REFUSED["choices without a choice"])
    monkeypatch.setattr(labeling, "PROJECT_ROOT", tmp_path)
    values = changed_at(stack_values("dev"), "labeling.projects", [
        {"title": "Cats", "labelConfig": "label_configs/broken.xml", "prefix": "cats"}])
    with pytest.raises(ConfigError) as caught:
        parse_settings(values, stack="dev")
    assert caught.value.problems == [
        'labeling.projects[0].labelConfig: "label_configs/broken.xml" View/Choices lacks name+toName+<Choice> or '
        "name+toName+value or name+toName+<View>; Label Studio refuses it"]
