"""annotations_final.csv: MTAT's exact layout parses; each kind of malformed row is a clear InputError."""

from __future__ import annotations

import pytest

from aurax.dataset.annotations import parse_annotations
from aurax.errors import InputError
from tests.dataset.mtat_fixture import FIXTURE_CLIPS, MTAT_TAGS, annotations_bytes


def test_fixture_has_the_published_layout() -> None:
    data = annotations_bytes()
    header, first = data.split(b"\r\n")[:2]
    assert header.startswith(b'"clip_id"\t"no voice"\t"singer"\t') and header.endswith(b'\t"english"\t"mp3_path"')
    assert len(header.split(b"\t")) == 190 and first.startswith(b'"2"\t"0"\t')
    assert data.endswith(b'.mp3"\r\n') and b"\n" not in data.replace(b"\r\n", b"")


def test_parses_tags_in_header_order_and_each_clip() -> None:
    parsed = parse_annotations(annotations_bytes())
    assert list(parsed.tags) == MTAT_TAGS and len(parsed.tags) == 188
    assert [(c.clip_id, c.mp3_path, set(c.tags)) for c in parsed.clips] == FIXTURE_CLIPS
    assert parsed.clips[0].folder == "0"


def _replace_line(line_no: int, text: bytes) -> bytes:
    lines = annotations_bytes().split(b"\r\n")
    lines[line_no - 1] = text
    return b"\r\n".join(lines)


def _row(clip_id: str = "99", value: str = "0", path: str = "0/x.mp3", drop: int = 0) -> bytes:
    cells = [clip_id, *([value] + ["0"] * (len(MTAT_TAGS) - 1))[: len(MTAT_TAGS) - drop], path]
    return "\t".join(f'"{c}"' for c in cells).encode()


@pytest.mark.parametrize(("row", "message"), [
    (_row(drop=1), "expected 190 tab-separated fields"),
    (_row(value="2"), "tag 'no voice' is '2'"),
    (_row(clip_id="x7"), "clip_id 'x7' is not an integer"),
    (_row(path="zz/x.mp3"), "mp3_path 'zz/x.mp3' is not of the form"),
    (_row(clip_id="5"), "clip_id 5 appears twice"),
    (b'"99\t"0"', "line 4"),
])
def test_malformed_row_names_its_line(row: bytes, message: str) -> None:
    with pytest.raises(InputError, match="line 4") as caught:
        parse_annotations(_replace_line(4, row))
    assert message in str(caught.value)


def test_wrong_header_is_refused() -> None:
    with pytest.raises(InputError, match='header must be "clip_id"'):
        parse_annotations(b'"id"\t"house"\t"mp3_path"\r\n')
    with pytest.raises(InputError, match="is empty"):
        parse_annotations(b"")


def test_a_bad_last_row_is_called_truncated_only_when_a_cut_explains_it() -> None:
    """Without a final line end, a last row with too few fields or half a path was cut short; a last row with
    a bad value is reported as the bad value it is."""
    body = annotations_bytes().rstrip(b"\r\n")
    with pytest.raises(InputError, match="ends in the middle of a row"):
        parse_annotations(body.rsplit(b"\t", 3)[0])  # cut between two fields
    with pytest.raises(InputError, match="ends in the middle of a row"):
        parse_annotations(body.replace(b'"', b"")[:-3])  # a copy without quotes, cut inside the last path
    whole = body.rsplit(b"\r\n", 1)
    with pytest.raises(InputError, match="tag 'no voice' is '2'") as caught:
        parse_annotations(whole[0] + b"\r\n" + _row(value="2"))
    assert "truncated" not in str(caught.value)
