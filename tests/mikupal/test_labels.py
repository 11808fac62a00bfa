from __future__ import annotations

import pytest

from mikupal.labels import LabelParseError, load_label_set

EMOBENCH26 = [
    "Admiration", "Adoration", "Aesthetic appreciation", "Amusement", "Anger", "Anxiety", "Awe", "Awkwardness",
    "Boredom", "Calmness", "Confusion", "Craving", "Disgust", "Empathic pain", "Entrancement", "Excitement", "Fear",
    "Horror", "Interest", "Joy", "Romance", "Nostalgia", "Relief", "Sadness", "Satisfaction", "Surprise",
]


def test_label_sets_match_the_design_contract():
    assert load_label_set("emobench26").names == EMOBENCH26
    assert load_label_set("meld7").names == ["anger", "disgust", "fear", "joy", "neutral", "sadness", "surprise"]
    for name in ("emobench26", "meld7"):
        for label in load_label_set(name).labels:
            assert label.description.endswith(".") and len(label.description.split()) >= 3


def test_every_fine_grained_label_maps_to_a_meld_class():
    fine, meld = load_label_set("emobench26"), load_label_set("meld7")
    assert {fine.to_meld7(n) for n in fine.names} <= set(meld.names)
    assert fine.to_meld7("Amusement") == "joy" and fine.to_meld7("Calmness") == "neutral"


@pytest.mark.parametrize(
    "answer,label",
    [
        ("Joy", "Joy"),
        ("  joy. ", "Joy"),
        ("happy", "Joy"),
        ("The speaker sounds happy.", "Joy"),
        ("unhappy", "Sadness"),  # an alias of Sadness, and never a substring match for "happy"
        ("Empathic pain", "Empathic pain"),
        ("not happy at all, rather angry", "Anger"),
    ],
)
def test_parse_matches_whole_labels_and_aliases(answer, label):
    assert load_label_set("emobench26").parse(answer) == label


@pytest.mark.parametrize("answer", ["", "jubilant", "happy and sad", "frustrated joy"])
def test_parse_refuses_answers_outside_the_set_or_ambiguous(answer):
    with pytest.raises(LabelParseError):
        load_label_set("emobench26").parse(answer)


def test_substrings_never_match():
    meld = load_label_set("meld7")
    with pytest.raises(LabelParseError):
        meld.parse("fearless")  # contains "fear"
    with pytest.raises(LabelParseError):
        meld.parse("sadder")  # contains "sad"
