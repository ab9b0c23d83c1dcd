"""Tag lists as HR types them: split on every separator Chinese keyboards produce, trimmed,
de-duplicated, sorted, and refused (naming the tag) when too long, too many or garbled."""

from __future__ import annotations

import pytest

from lms.people.tags import (
    MAX_TAG_LENGTH,
    MAX_TAGS,
    TagError,
    format_tags,
    normalise_tags,
    parse_tags,
    split_tags,
    valid_tags,
)


def test_every_separator_splits_and_the_list_is_sorted_and_unique():
    text = "外派, 特殊工种，财务审批人、试用期;外派；特殊工种\n夜班\r\n值班长"
    assert parse_tags(text) == sorted({"外派", "特殊工种", "财务审批人", "试用期", "夜班", "值班长"})


def test_whitespace_is_trimmed_and_collapsed_including_full_width_spaces():
    assert parse_tags("  特种\u3000 作业 ,\t叉车   司机 ") == ["叉车 司机", "特种 作业"]


def test_blank_input_and_empty_pieces_give_no_tags():
    assert parse_tags(None) == []
    assert parse_tags("") == []
    assert parse_tags(" , 、;；\n ") == []
    assert parse_tags("外派,,、外派,") == ["外派"]


def test_invisible_zero_width_characters_from_excel_are_dropped():
    assert parse_tags("\ufeff外派\u200b") == ["外派"]


def test_a_tag_of_exactly_the_limit_passes_and_one_more_character_is_refused():
    ok = "长" * MAX_TAG_LENGTH
    assert parse_tags(ok) == [ok]
    with pytest.raises(TagError) as info:
        parse_tags(f"外派、{ok}长")
    assert info.value.kind == "too_long"
    assert info.value.tag == ok + "长"
    assert info.value.limit == MAX_TAG_LENGTH


@pytest.mark.parametrize("char", ["\x00", "\x07", "\x1b", "\x7f", "\u202e"])
def test_control_characters_are_refused(char):
    with pytest.raises(TagError) as info:
        parse_tags(f"外派、特殊{char}工种")
    assert info.value.kind == "control"
    assert info.value.tag.startswith("特殊")


def test_at_most_twenty_distinct_tags_per_person():
    twenty = [f"标签{i:02d}" for i in range(MAX_TAGS)]
    assert parse_tags("、".join(twenty + twenty)) == twenty  # duplicates do not count
    with pytest.raises(TagError) as info:
        parse_tags("、".join([*twenty, "标签99"]))
    assert info.value.kind == "too_many"
    assert info.value.limit == MAX_TAGS


def test_normalise_tags_accepts_pieces_that_are_lists_themselves():
    assert normalise_tags(["外派、试用期", " 外派 ", ""]) == ["外派", "试用期"]


def test_split_tags_keeps_raw_pieces_for_the_service_to_judge():
    assert split_tags("a,\x07b, ,c") == ["a", "\x07b", "c"]


def test_valid_tags_drops_bad_ones_without_refusing():
    assert valid_tags(["外派", "x" * 40, "a\x00b", "试用期"]) == ["外派", "试用期"]


def test_format_tags_round_trips_through_parse_tags():
    tags = ["叉车 司机", "外派", "试用期"]
    assert parse_tags(format_tags(tags)) == tags
