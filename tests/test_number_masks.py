"""A masked number keeps its calling code, found by lookup rather than a parse."""

import phonenumbers
import pytest

from otp.core.phone import mask, mask_in_record


def _examples() -> list[tuple[str, str]]:
    found = []
    for region in sorted(phonenumbers.SUPPORTED_REGIONS):
        example = phonenumbers.example_number(region)
        if example is not None:
            e164 = phonenumbers.format_number(example, phonenumbers.PhoneNumberFormat.E164)
            found.append((e164, str(example.country_code)))
    return found


@pytest.mark.parametrize(("e164", "code"), _examples())
def test_a_mask_keeps_the_calling_code_phonenumbers_reads_for_every_regions_example(e164: str, code: str) -> None:
    assert mask(e164) == f"+{code}*******{e164[-4:]}"
    assert mask_in_record(e164) == f"+{code}*********{e164[-2:]}"


@pytest.mark.parametrize("e164", ["+999123456789", "+0123456789", "+01234567890"])
def test_a_number_with_no_known_calling_code_shows_only_its_first_digit(e164: str) -> None:
    assert mask(e164) == f"+{e164[1]}*******{e164[-4:]}"


def test_a_short_input_is_all_mask() -> None:
    assert mask("+12345") == "*******"
