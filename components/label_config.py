"""Labeling configs judged the way Label Studio 1.23.2 judges them when a project is created
or changed (label_studio/core/label_config.py, `validate_label_config`), so a config it
would refuse stops the plan instead of the reconciler's Job. Our own code, standard
library only: the program never imports Label Studio. tests/test_label_config.py holds
this verdict to Label Studio's own on a corpus of good and broken configs.

What Label Studio checks, in its order (the first failure is the answer):
1. well-formed XML, no DTD (it parses with defusedxml);
2. its JSON schema (core/utils/schema/label_config_schema.json) over the XML converted by
   xmljson's BadgerFish convention: attribute and text values that read as numbers or
   true/false become numbers and booleans there, so `name="1"` is not a text name. The
   schema looks only at these tags, directly under a <View> (or under a <View> inside
   <Choices>/<Labels>): Choices, Labels, Choice, Label (in nested views), Image, Text,
   HyperText, TextArea, Number, View;
3. names unique, and 4. every `toName` naming an existing name; both by regular
   expressions over the re-serialised XML, as Label Studio does (so `toName="a, b"` names
   " b", and any attribute ending in `name` counts as a name);
5. a <Video>'s playback speeds (label-studio-sdk's tag validation).

Beyond Label Studio, the stack also wants a <View> root: Label Studio's editor renders
nothing else, though its API stores it.
"""

from __future__ import annotations

import re
import xml.etree.ElementTree as ET
import xml.parsers.expat
from collections import Counter
from typing import Any, Callable, Optional

# label-studio-sdk's bounds for a <Video>'s playback speeds.
PLAYBACK_SPEED = (0.05, 10.0)
_NAME = re.compile(r'name="([^"]*)"')
_TO_NAME = re.compile(r'toName="([^"]*)"')


class Refused(Exception):
    """One line: why Label Studio would refuse the config."""


# --------------------------------------------------------------------------- parsing


def _refuse_dtd(*_: Any) -> None:
    raise Refused("declares a DTD; Label Studio parses configs with DTDs forbidden")


def _parse(text: str) -> ET.Element:
    scan = xml.parsers.expat.ParserCreate()
    scan.StartDoctypeDeclHandler = _refuse_dtd
    try:
        scan.Parse(text, True)
        return ET.fromstring(text)
    except (xml.parsers.expat.ExpatError, ET.ParseError) as error:
        raise Refused(f"is not well-formed XML ({error})") from None


def _scalar(text: str) -> Any:
    """xmljson's reading of an attribute or text: true/false, an integer, a finite float, or the text."""
    if text.lower() in ("true", "false"):
        return text.lower() == "true"
    try:
        return int(text)
    except ValueError:
        pass
    try:
        number = float(text)
    except ValueError:
        return text
    return number if float("-inf") < number < float("inf") else text


def _badgerfish(element: ET.Element) -> dict:
    """The element as xmljson's BadgerFish convention gives it to Label Studio's schema check."""
    value: dict[str, Any] = {f"@{name}": _scalar(text) for name, text in element.attrib.items()}
    if element.text and element.text.strip():
        value["$"] = _scalar(element.text)
    count = Counter(child.tag for child in element)
    for child in element:
        if count[child.tag] == 1:
            value[child.tag] = _badgerfish(child)
        else:
            value.setdefault(child.tag, []).append(_badgerfish(child))
    return value


def _single_choice_as_list(view: Any) -> None:
    """Label Studio's own workaround (`_fix_choices`): a lone <Choice> becomes a list, for the
    <Choices> of each <View> reached through <View>s, and for several <Choices> only when every one has a <Choice>."""
    views = view if isinstance(view, list) else [view]
    for node in views:
        if not isinstance(node, dict):
            continue
        choices = node.get("Choices")
        if isinstance(choices, dict) and "Choice" in choices and not isinstance(choices["Choice"], list):
            choices["Choice"] = [choices["Choice"]]
        elif isinstance(choices, list) and all("Choice" in tag for tag in choices):
            for tag in choices:
                if not isinstance(tag["Choice"], list):
                    tag["Choice"] = [tag["Choice"]]
        if "View" in node:
            _single_choice_as_list(node["View"])


# --------------------------------------------------------------------------- the schema, as rules

Rule = Callable[[Any, str], None]


def _text(tag: dict, key: str, where: str) -> None:
    if key in tag and not isinstance(tag[key], str):
        what = "its text" if key == "$" else f"{key[1:]}={tag[key]!r}"
        kind = "boolean" if isinstance(tag[key], bool) else "number"
        raise Refused(f"{where} has {what}, which Label Studio reads as a {kind}, not text; its schema wants text there")


def _requires(tag: dict, where: str, *alternatives: tuple[str, ...]) -> None:
    if not any(all(key in tag for key in keys) for keys in alternatives):
        wanted = " or ".join("+".join(k.lstrip("@") if k.startswith("@") else f"<{k}>" for k in keys)
                             for keys in alternatives)
        raise Refused(f"{where} lacks {wanted}; Label Studio refuses it")


def _one_or_many(rule: Rule) -> Rule:
    def check(value: Any, where: str) -> None:
        for i, item in enumerate(value if isinstance(value, list) else [value]):
            rule(item, f"{where}[{i + 1}]" if isinstance(value, list) else where)
    return check


def _with_value(tag: Any, where: str) -> None:
    _requires(tag, where, ("@value",))
    _text(tag, "$", where)


def _named_with_value(tag: Any, where: str) -> None:
    with_value, with_list = ("@name" in tag and "@value" in tag), ("@name" in tag and "@valueList" in tag)
    if with_value == with_list:  # the schema's oneOf: exactly one
        raise Refused(f"{where} needs a name and exactly one of value or valueList; Label Studio refuses it")
    _text(tag, "$", where)


def _named_to(tag: Any, where: str) -> None:
    _requires(tag, where, ("@name", "@toName"))
    for key in ("@name", "@toName", "$"):
        _text(tag, key, where)


def _control(item_tag: str, items_may_be_one: bool) -> Rule:
    """<Choices> and <Labels>: name, toName and an item, a value or a nested <View>."""
    def check(tag: Any, where: str) -> None:
        _requires(tag, where, ("@name", "@toName", item_tag), ("@name", "@toName", "@value"),
                  ("@name", "@toName", "View"))
        for key in ("@name", "@toName", "$"):
            _text(tag, key, where)
        if item_tag in tag:
            items = tag[item_tag]
            if not items_may_be_one and not isinstance(items, list):
                raise Refused(f"{where} holds one <{item_tag}> beside a <Choices> without any, where Label Studio "
                              "turns a lone one into the list its schema wants only when every <Choices> has one")
            _one_or_many(_with_value)(items, f"{where}/{item_tag}")
        if "View" in tag:
            _one_or_many(_view(nested=True))(tag["View"], f"{where}/View")
    return check


def _view(nested: bool) -> Rule:
    def check(view: Any, where: str) -> None:
        rules: dict[str, Rule] = {
            "Choices": _one_or_many(_control("Choice", items_may_be_one=False)),
            "Labels": _one_or_many(_control("Label", items_may_be_one=True)),
            "View": _one_or_many(_view(nested=True)),
            "Image": _one_or_many(_named_with_value), "Text": _one_or_many(_named_with_value),
            "HyperText": _one_or_many(_named_with_value),
            "TextArea": _one_or_many(_named_to), "Number": _one_or_many(_named_to),
        }
        if nested:
            rules.update(Label=_one_or_many(_with_value), Choice=_one_or_many(_with_value))
        for key, rule in rules.items():
            if key in view:
                rule(view[key], f"{where}/{key}")
    return check


# --------------------------------------------------------------------------- names and tags


def _names(root: ET.Element) -> None:
    serialised = ET.tostring(root, encoding="unicode")
    names = _NAME.findall(serialised)
    repeated = sorted({name for name in names if names.count(name) > 1})
    if repeated:
        raise Refused(f"names {', '.join(repeated)} more than once; Label Studio wants each name once")
    for targets in _TO_NAME.findall(serialised):
        for target in targets.split(","):
            if target not in names:
                raise Refused(f'has toName="{target}" but no tag named so (Label Studio splits toName at commas '
                              "and keeps spaces)")


def _video_speeds(root: ET.Element) -> None:
    low, high = PLAYBACK_SPEED
    for video in root.iter("Video"):
        speeds = {}
        for attribute in ("defaultPlaybackSpeed", "minPlaybackSpeed"):
            raw = video.get(attribute)
            if raw is None:
                continue
            try:
                speeds[attribute] = float(raw)
            except ValueError:
                raise Refused(f'<Video name="{video.get("name")}"> has {attribute}="{raw}", not a number') from None
            if not low <= speeds[attribute] <= high:
                raise Refused(f'<Video name="{video.get("name")}"> has {attribute}="{raw}"; expected {low} to {high}')
        if speeds.get("minPlaybackSpeed", 0) > speeds.get("defaultPlaybackSpeed", high):
            raise Refused(f'<Video name="{video.get("name")}"> has minPlaybackSpeed above defaultPlaybackSpeed')


def label_studio_refusal(text: str) -> Optional[str]:
    """Why Label Studio 1.23.2 would refuse this config, in one line; None when it accepts it."""
    try:
        root = _parse(text)
        config = {root.tag: _badgerfish(root)}
        _single_choice_as_list(config.get("View"))
        if "View" in config:
            _view(nested=False)(config["View"], "View")
        _names(root)
        _video_speeds(root)
    except Refused as refusal:
        return str(refusal)
    return None


def label_config_problem(text: str) -> Optional[str]:
    """What is wrong with a labeling config for this stack: Label Studio's refusal, or a root other than <View>."""
    refusal = label_studio_refusal(text)
    if refusal:
        return refusal
    if ET.fromstring(text).tag != "View":
        return "is not a labeling config; expected a <View> root element"
    return None
