"""Tests for lms.people.idnumber (GB 11643-1999 resident ID numbers)."""

from __future__ import annotations

from datetime import date

import pytest
from hypothesis import given
from hypothesis import strategies as st

from lms.people import idnumber

TODAY = date(2025, 6, 1)
PUBLIC_EXAMPLE = "11010519491231002X"  # widely published valid sample number


def check_char(first17: str) -> str:
    """Independent ISO 7064 MOD 11-2: weights are 2**(17-i) mod 11."""
    total = sum(int(d) * (2 ** (17 - i) % 11) for i, d in enumerate(first17))
    value = (12 - total % 11) % 11
    return "X" if value == 10 else str(value)


def make_id(region: str = "440305", birth: str = "19900307", seq: str = "123") -> str:
    first17 = region + birth + seq
    return first17 + check_char(first17)


def wrong_check(number: str) -> str:
    right = number[-1]
    return number[:-1] + ("0" if right != "0" else "1")


def test_independent_check_helper_agrees_with_public_example() -> None:
    assert check_char(PUBLIC_EXAMPLE[:17]) == "X"


@pytest.mark.parametrize(
    "number",
    [
        PUBLIC_EXAMPLE,
        make_id(),
        make_id(birth="20000229"),  # leap day
        make_id(region="310101", birth="19851231", seq="999"),
        make_id(birth="20250601"),  # born today: not in the future
    ],
)
def test_valid_18_digit(number: str) -> None:
    assert idnumber.validate(number, today=TODAY) is None


def test_lowercase_x_spaces_and_fullwidth_are_normalized() -> None:
    spaced = "110105 1949\u30001231 002x "
    assert idnumber.normalize(spaced) == PUBLIC_EXAMPLE
    assert idnumber.validate(spaced, today=TODAY) is None
    fullwidth = "１１０１０５１９４９１２３１００２ｘ"
    assert idnumber.normalize(fullwidth) == PUBLIC_EXAMPLE


def test_wrong_check_digit() -> None:
    assert idnumber.validate(wrong_check(make_id()), today=TODAY) == "身份证号校验位错误"
    assert idnumber.validate("110105194912310020", today=TODAY) == "身份证号校验位错误"


@pytest.mark.parametrize("number", ["", "1234567", "11010519491231002", "11010519491231002X1"])
def test_wrong_length(number: str) -> None:
    reason = idnumber.validate(number, today=TODAY)
    assert reason is not None
    assert "18位" in reason or "为空" in reason


@pytest.mark.parametrize(
    "number",
    [
        "11010519491231A02X",
        "X1010519491231002X",
        "1101051949123100XX",
        "11010519491231002\u0663",  # Arabic-Indic digit three: isdigit() but not ASCII
    ],
)
def test_letters_rejected(number: str) -> None:
    assert idnumber.validate(number, today=TODAY) == "身份证号只能包含数字，最后一位可以是X"


@pytest.mark.parametrize("birth", ["19900230", "19901301", "19900001", "20230229", "18991231"])
def test_bad_birth_date_even_with_correct_check_digit(birth: str) -> None:
    assert idnumber.validate(make_id(birth=birth), today=TODAY) == "出生日期无效"


def test_future_birth_date() -> None:
    reason = idnumber.validate(make_id(birth="20250602"), today=TODAY)
    assert reason is not None and reason.startswith("出生日期无效")


def test_today_defaults_to_real_today() -> None:
    assert idnumber.validate(make_id(birth="29990101")) is not None
    assert idnumber.validate(PUBLIC_EXAMPLE) is None


def test_15_digit_legacy() -> None:
    assert idnumber.validate("110105491231002", today=TODAY) is None
    assert idnumber.birth_date("110105491231002", today=TODAY) == date(1949, 12, 31)
    assert idnumber.validate("110105490230002", today=TODAY) == "出生日期无效"
    assert idnumber.validate("11010549123100X", today=TODAY) is not None


def test_to_18_digits_upgrades_legacy_number() -> None:
    assert idnumber.to_18_digits("110105491231002", today=TODAY) == PUBLIC_EXAMPLE
    assert idnumber.to_18_digits(PUBLIC_EXAMPLE.lower(), today=TODAY) == PUBLIC_EXAMPLE
    assert idnumber.to_18_digits(wrong_check(PUBLIC_EXAMPLE), today=TODAY) is None


def test_birth_date() -> None:
    assert idnumber.birth_date(PUBLIC_EXAMPLE) == date(1949, 12, 31)
    assert idnumber.birth_date(make_id(birth="20000229")) == date(2000, 2, 29)
    assert idnumber.birth_date(wrong_check(PUBLIC_EXAMPLE)) is None
    assert idnumber.birth_date("garbage") is None


def test_mask_18_digit_exact_format() -> None:
    number = make_id(region="110105", birth="19900101", seq="123")
    masked = idnumber.mask(number)
    assert masked == "1101" + "*" * 10 + number[-4:]
    assert idnumber.mask("110105199001011234") == "1101**********1234"
    assert masked.count("*") == 10


def test_mask_15_digit_short_and_empty() -> None:
    assert idnumber.mask("110105491231002") == "1101*******1002"
    assert idnumber.mask("12345678") == "********"
    assert idnumber.mask("123456789") == "1234*6789"
    assert idnumber.mask("") == ""
    assert idnumber.mask(PUBLIC_EXAMPLE.lower()) == "1101**********002X"


@given(st.text(alphabet="0123456789Xx", max_size=40) | st.text(max_size=40))
def test_mask_never_reveals_more_than_8_characters(raw: str) -> None:
    normalized = idnumber.normalize(raw)
    masked = idnumber.mask(raw)
    assert len(masked) == len(normalized)
    revealed = [i for i, ch in enumerate(masked) if ch != "*"]
    assert len(revealed) <= 8
    for i in revealed:
        assert masked[i] == normalized[i]
    if len(normalized) < 9:
        assert set(masked) <= {"*"}


@given(st.text(alphabet="0123456789X", min_size=1, max_size=24))
def test_mask_keeps_length_of_clean_input(raw: str) -> None:
    assert len(idnumber.mask(raw)) == len(raw)


@given(
    st.dates(min_value=date(1900, 1, 1), max_value=TODAY),
    st.from_regex(r"[1-8][0-9]{5}", fullmatch=True),
    st.from_regex(r"[0-9]{3}", fullmatch=True),
)
def test_constructed_numbers_validate_and_single_digit_typos_do_not(
    born: date, region: str, seq: str
) -> None:
    number = make_id(region=region, birth=born.strftime("%Y%m%d"), seq=seq)
    assert idnumber.validate(number, today=TODAY) is None
    assert idnumber.birth_date(number, today=TODAY) == born
    # MOD 11-2 detects every single-digit substitution in the first 17 digits.
    i = int(seq) % 17
    typo = number[:i] + str((int(number[i]) + 1) % 10) + number[i + 1 :]
    assert idnumber.validate(typo, today=TODAY) is not None
