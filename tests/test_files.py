"""Placing a file's bytes at a second path: a reflink or hard link where the file system allows,
else a copy; the bytes are the source's either way."""

import errno
import os

import pytest
from conftest import reflinks_here

from eiad.data import files
from eiad.data.files import place


def test_place_shares_the_source_when_the_file_system_allows(tmp_path):
    source = tmp_path / "image.jpg"
    source.write_bytes(b"\xff\xd8 jpeg bytes")
    how = place(source, tmp_path / "linked.jpg")
    assert (tmp_path / "linked.jpg").read_bytes() == source.read_bytes()
    if reflinks_here(tmp_path):
        assert how == "reflink"
    else:  # ext4, tmpfs: one file under two names
        assert how == "hardlink" and os.path.samefile(source, tmp_path / "linked.jpg")


def test_place_copies_where_it_cannot_link(tmp_path, monkeypatch):
    def refuse(source, dest):
        raise OSError(errno.EXDEV, "Invalid cross-device link")

    monkeypatch.setattr(files, "_reflink", lambda source, dest: False)
    monkeypatch.setattr(os, "link", refuse)
    source = tmp_path / "image.jpg"
    source.write_bytes(b"\xff\xd8 jpeg bytes")
    assert place(source, tmp_path / "copied.jpg") == "copy"
    assert (tmp_path / "copied.jpg").read_bytes() == source.read_bytes()
    assert not os.path.samefile(source, tmp_path / "copied.jpg")


def test_place_does_not_hide_other_failures(tmp_path):
    with pytest.raises(FileNotFoundError):
        place(tmp_path / "missing.jpg", tmp_path / "out.jpg")
