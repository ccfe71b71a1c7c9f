"""A masked number keeps its calling code, found by lookup rather than a parse."""

import phonenumbers
import pytest

from otp.core.phone import HIDDEN_DIGITS, mask, mask_in_record


def _examples() -> list[tuple[str, str]]:
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example is not None:
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            found.append((e164, str(example.country_code)))
    return found


def _shown(e164: str, code: str, visible: int) -> str:
    """The last digits a mask shows: ``visible``, but never within HIDDEN_DIGITS of the whole national number."""
    shown = max(0, min(visible, len(e164) - 1 - len(code) - HIDDEN_DIGITS))
    return e164[len(e164) - shown :]


@pytest.mark.parametrize(("e164", "code"), _examples())
def test_a_mask_keeps_the_calling_code_phonenumbers_reads_for_every_regions_example(e164: str, code: str) -> None:
    assert mask(e164) == f"+{code}" + "*" * (11 - len(_shown(e164, code, 4))) + _shown(e164, code, 4)
    assert mask_in_record(e164) == f"+{code}" + "*" * (11 - len(_shown(e164, code, 2))) + _shown(e164, code, 2)


@pytest.mark.parametrize(("e164", "code"), _examples())
def test_no_mask_spells_a_short_national_number_whole(e164: str, code: str) -> None:
    """Tokelau's and Niue's numbers have 4 national digits: code + last 4 would be all of it."""
    for masked in (mask(e164), mask_in_record(e164)):
        assert sum(c.isdigit() for c in masked) <= len(e164) - 1 - HIDDEN_DIGITS, masked


def test_a_common_number_still_shows_its_last_four() -> None:
    assert mask("+15017122661") == "+1*******2661"
    assert mask("+8801712345678") == "+880*******5678"
    assert mask("+6907290") == "+690**********0"


def test_superscript_digits_mask_without_an_exception() -> None:
    assert mask("+²⁵⁰¹⁷¹²²⁶⁶¹") == "+²*******²⁶⁶¹"


@pytest.mark.parametrize("e164", ["+999123456789", "+0123456789", "+01234567890"])
def test_a_number_with_no_known_calling_code_shows_only_its_first_digit(e164: str) -> None:
    assert mask(e164) == f"+{e164[1]}*******{e164[-4:]}"


def test_a_short_input_is_all_mask() -> None:
    assert mask("+12345") == "*******"
