"""SMS text: every locale fits one segment, segment counting by the GSM 03.38 rules, prices."""

from __future__ import annotations

from decimal import Decimal

import pytest

from otp.core import messages
from otp.errors import InvalidInput

LONGEST_CODE = "1234567890"  # OTP_CODE_LENGTH allows up to 10 digits
LONG_APP_NAME = "Northwind Traders Secure Login"
WEBOTP_DOMAIN = "example.com"

LATIN_SCRIPT_LOCALES = ["en", "es", "fr", "de", "pt", "it", "nl"]


def test_long_inputs_are_as_long_as_the_tests_claim() -> None:
    assert len(LONGEST_CODE) == 10
    assert len(LONG_APP_NAME) == 30


def test_templates_cover_the_promised_locales() -> None:
    assert set(messages.TEMPLATES) >= {"en", "es", "fr", "de", "pt", "it", "nl", "ja", "zh", "ar", "hi", "ru"}


@pytest.mark.parametrize("locale", sorted(messages.TEMPLATES))
@pytest.mark.parametrize("domain", ["", WEBOTP_DOMAIN])
def test_every_template_is_one_segment_with_longest_code_and_name(locale: str, domain: str) -> None:
    body = messages.render(LONGEST_CODE, locale=locale, app_name=LONG_APP_NAME, webotp_domain=domain)
    assert messages.segments(body) == 1, f"{locale}: {messages.encoding(body)} {body!r}"


@pytest.mark.parametrize("locale", sorted(messages.TEMPLATES))
def test_every_template_names_the_code_and_the_service_once(locale: str) -> None:
    template = messages.TEMPLATES[locale]
    assert template.count("{code}") == 1
    assert template.count("{app}") == 1
    body = messages.render(LONGEST_CODE, locale=locale, app_name=LONG_APP_NAME)
    assert LONGEST_CODE in body
    assert LONG_APP_NAME in body


@pytest.mark.parametrize("locale", LATIN_SCRIPT_LOCALES)
def test_latin_script_templates_stay_in_gsm7(locale: str) -> None:
    body = messages.render(LONGEST_CODE, locale=locale, app_name=LONG_APP_NAME, webotp_domain=WEBOTP_DOMAIN)
    assert messages.encoding(body) == "GSM-7"


def test_english_puts_the_code_first() -> None:
    assert messages.render("123456", app_name="Acme") == "123456 is your Acme verification code."


def test_webotp_line_is_the_last_line_after_a_blank_line() -> None:
    body = messages.render("123456", app_name="Acme", webotp_domain="example.com")
    assert body == "123456 is your Acme verification code.\n\n@example.com #123456"
    assert body.splitlines()[-1] == "@example.com #123456"


def test_no_webotp_line_without_a_domain() -> None:
    assert "@" not in messages.render("123456", locale="ja", app_name="Acme")


# --- the other templates (TemplateSid) --------------------------------------------------

APP_HASH = "FA+9qCX9VSu"
# The worst value of a variable: as long as a name may be, of one-septet, one-unit characters.
LONGEST_VALUE = "W" * messages.APP_NAME_MAX
TEMPLATE_NAMES = sorted(messages.CATALOGUE)


def _worst(template: messages.Template) -> dict[str, str]:
    return dict.fromkeys(template.variables, LONGEST_VALUE)


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
@pytest.mark.parametrize("locale", sorted(messages.TEMPLATES))
@pytest.mark.parametrize(("domain", "app_hash"), [("", ""), (WEBOTP_DOMAIN, ""), (WEBOTP_DOMAIN, APP_HASH)])
def test_every_template_in_every_locale_is_one_segment_at_its_worst(
    name: str, locale: str, domain: str, app_hash: str
) -> None:
    template = messages.CATALOGUE[name]
    body = messages.render(
        LONGEST_CODE,
        locale=locale,
        app_name=LONG_APP_NAME,
        webotp_domain=domain,
        app_hash=app_hash,
        template=name,
        substitutions=_worst(template),
    )
    assert messages.segments(body) == 1, f"{name}/{locale}: {messages.encoding(body)} {body!r}"
    assert LONGEST_CODE in body and LONG_APP_NAME in body


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_every_template_is_written_in_english_and_names_code_service_and_variables_once(name: str) -> None:
    template = messages.CATALOGUE[name]
    assert template.name == name and messages.DEFAULT_LOCALE in template.texts
    assert set(template.texts) <= set(messages.TEMPLATES)  # a locale choose_locale can pick
    for text in template.texts.values():
        assert text.count("{code}") == 1 and text.count("{app}") == 1, text
        for variable in template.variables:
            assert text.count("{" + variable + "}") == 1, text


@pytest.mark.parametrize("name", TEMPLATE_NAMES)
def test_latin_script_translations_of_every_template_stay_in_gsm7(name: str) -> None:
    template = messages.CATALOGUE[name]
    for locale in set(template.texts) & set(LATIN_SCRIPT_LOCALES):
        body = messages.render(LONGEST_CODE, locale=locale, template=name, substitutions=_worst(template))
        assert messages.encoding(body) == "GSM-7", (locale, body)


def test_a_template_not_written_in_the_locale_falls_back_to_english() -> None:
    assert "ja" not in messages.CATALOGUE["sign_in"].texts
    assert messages.render("123456", locale="ja", app_name="Acme", template="sign_in") == (
        "123456 is your Acme sign-in code."
    )
    assert messages.render(
        "123456", country="BR", app_name="Acme", template="purpose", substitutions={"purpose": "pagar"}
    ) == ("123456 is your Acme code to pagar.")


def test_substitutions_are_held_to_the_rule_of_a_name_in_the_sms() -> None:
    purpose = messages.CATALOGUE["purpose"]
    assert messages.validate_substitutions(purpose, {"purpose": " confirm "}, "S") == {"purpose": "confirm"}
    for given in ({"purpose": "go to evil.com"}, {"purpose": "x" * 31}, {}, {"purpose": "a", "b": "c"}, {"purpose": 1}):
        with pytest.raises(InvalidInput) as caught:
            messages.validate_substitutions(purpose, given, "S")
        assert caught.value.field == "S"
    with pytest.raises(InvalidInput):
        messages.validate_substitutions(messages.CATALOGUE["sign_in"], {"purpose": "a"}, "S")


# --- locale selection ---------------------------------------------------------------------


@pytest.mark.parametrize(
    ("locale", "expected"),
    [("pt-BR", "pt"), ("zh-Hans", "zh"), ("EN", "en"), ("es_MX", "es"), ("de", "de"), (" fr-CA ", "fr")],
)
def test_locale_tag_picks_its_primary_language(locale: str, expected: str) -> None:
    assert messages.choose_locale(locale) == expected


def test_locale_tag_wins_over_country() -> None:
    assert messages.choose_locale("de", "BR") == "de"


@pytest.mark.parametrize(
    ("country", "expected"),
    [
        ("BR", "pt"),
        ("MX", "es"),
        ("JP", "ja"),
        ("CN", "zh"),
        ("TW", "zh"),
        ("EG", "ar"),
        ("SA", "ar"),
        ("RU", "ru"),
        ("DE", "de"),
        ("AT", "de"),
        ("FR", "fr"),
        ("NL", "nl"),
        ("IT", "it"),
        ("br", "pt"),
    ],
)
def test_country_picks_the_language_without_a_locale(country: str, expected: str) -> None:
    assert messages.choose_locale(country=country) == expected


def test_india_gets_english_not_hindi_by_country() -> None:
    assert messages.choose_locale(country="IN") == "en"
    assert messages.choose_locale("hi", "IN") == "hi"


def test_unsupported_language_falls_back_to_the_country() -> None:
    assert messages.choose_locale("ca-ES", "ES") == "es"


@pytest.mark.parametrize(("locale", "country"), [("", ""), ("sv-SE", "SE"), ("", "US"), ("", "CH"), ("x", "??")])
def test_unknown_locale_and_country_fall_back_to_english(locale: str, country: str) -> None:
    assert messages.choose_locale(locale, country) == "en"


def test_render_uses_the_country_template() -> None:
    assert messages.render("123456", country="BR", app_name="Acme") == "123456 é sua senha Acme."


# --- segments -----------------------------------------------------------------------------


@pytest.mark.parametrize(("length", "expected"), [(0, 1), (1, 1), (160, 1), (161, 2), (306, 2), (307, 3), (459, 3)])
def test_gsm7_segment_boundaries(length: int, expected: int) -> None:
    body = "a" * length
    assert messages.encoding(body) == "GSM-7"
    assert messages.segments(body) == expected


@pytest.mark.parametrize(("count", "expected"), [(80, 1), (81, 2)])
def test_gsm7_extension_characters_count_double(count: int, expected: int) -> None:
    assert messages.segments("{" * count) == expected


@pytest.mark.parametrize("ch", ["^", "{", "}", "\\", "[", "~", "]", "|", "€", "\f"])
def test_each_extension_character_is_gsm7_and_two_septets(ch: str) -> None:
    assert messages.encoding(ch) == "GSM-7"
    assert messages.segments("a" * 158 + ch) == 1
    assert messages.segments("a" * 159 + ch) == 2


def test_escape_pair_is_not_split_across_parts() -> None:
    # A two-septet "€" after 152 septets would straddle the 153-septet boundary, so it moves
    # whole to part two: 306 septets then need 3 parts, not the 306 / 153 = 2 a naive count gives.
    assert messages.segments("a" * 152 + "€" + "a" * 151) == 2
    assert messages.segments("a" * 152 + "€" + "a" * 152) == 3


def test_gsm_basic_set_accents_stay_gsm7() -> None:
    assert messages.encoding("éèùìòàÇÄÖÑÜäöñüß¿¡£¥§ΔΩ@_") == "GSM-7"


@pytest.mark.parametrize("text", ["ó", "ç", "ã", "á", "ê", "ő", "ü\u0301"])
def test_characters_outside_gsm_switch_to_ucs2(text: str) -> None:
    assert messages.encoding("code " + text) == "UCS-2"


@pytest.mark.parametrize(("length", "expected"), [(70, 1), (71, 2), (134, 2), (135, 3)])
def test_ucs2_segment_boundaries(length: int, expected: int) -> None:
    body = "ж" * length
    assert messages.encoding(body) == "UCS-2"
    assert messages.segments(body) == expected


def test_one_non_gsm_character_puts_the_whole_message_in_ucs2() -> None:
    assert messages.segments("a" * 69 + "ó") == 1
    assert messages.segments("a" * 70 + "ó") == 2


def test_emoji_counts_as_two_code_units() -> None:
    assert messages.encoding("🔐") == "UCS-2"
    assert messages.segments("a" * 68 + "🔐") == 1
    assert messages.segments("a" * 69 + "🔐") == 2


def test_surrogate_pair_is_not_split_across_parts() -> None:
    # Same rule for UTF-16: 134 code units, but the emoji cannot straddle the 67-unit boundary.
    assert messages.segments("ж" * 66 + "🔐" + "ж" * 65) == 2
    assert messages.segments("ж" * 66 + "🔐" + "ж" * 66) == 3


# --- prices -------------------------------------------------------------------------------


def test_price_is_per_segment_with_four_decimals_in_usd() -> None:
    assert messages.estimate_price("US", 1) == ("0.0079", "USD")
    assert messages.estimate_price("US", 2) == ("0.0158", "USD")
    assert messages.estimate_price("gb", 3) == ("0.1200", "USD")


def test_unknown_country_uses_the_default_price() -> None:
    assert messages.estimate_price("ZZ", 1) == ("0.0500", "USD")


def test_zero_segments_cost_nothing() -> None:
    assert messages.estimate_price("DE", 0) == ("0.0000", "USD")


def test_negative_segments_are_rejected() -> None:
    with pytest.raises(ValueError, match="negative"):
        messages.estimate_price("US", -1)


def test_custom_table_replaces_the_defaults() -> None:
    table = {"US": Decimal("0.01"), "*": Decimal("0.1")}
    assert messages.estimate_price("US", 2, table) == ("0.0200", "USD")
    assert messages.estimate_price("DE", 1, table) == ("0.1000", "USD")


def test_price_rounds_half_up_to_four_decimals() -> None:
    assert messages.estimate_price("US", 1, {"US": Decimal("0.00005")}) == ("0.0001", "USD")


def test_table_without_country_or_default_is_an_error() -> None:
    with pytest.raises(ValueError, match="no price for country 'DE'"):
        messages.estimate_price("DE", 1, {"US": Decimal("0.01")})


def test_price_table_parses_the_env_format() -> None:
    assert messages.parse_price_table("US=0.0079,GB=0.04,*=0.05") == {
        "US": Decimal("0.0079"),
        "GB": Decimal("0.04"),
        "*": Decimal("0.05"),
    }


def test_price_table_tolerates_spaces_case_and_a_trailing_comma() -> None:
    assert messages.parse_price_table(" us = 0.01 , *=0.05, ") == {"US": Decimal("0.01"), "*": Decimal("0.05")}


def test_empty_price_table_is_empty() -> None:
    assert messages.parse_price_table("") == {}


def test_parsed_table_prices_an_estimate() -> None:
    table = messages.parse_price_table("US=0.0079,*=0.05")
    assert messages.estimate_price("US", 3, table) == ("0.0237", "USD")


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("US", "is not COUNTRY=AMOUNT"),
        ("US:0.01", "is not COUNTRY=AMOUNT"),
        ("USA=0.01", "not a two-letter country code"),
        ("=0.01", "not a two-letter country code"),
        ("U1=0.01", "not a two-letter country code"),
        ("UK=0.04", r"'UK' is not an ISO 3166 country code \(the United Kingdom is GB\)"),
        ("XX=0.04", "'XX' is not an ISO 3166 country code"),
        ("US=", "is not a number"),
        ("US=cheap", "is not a number"),
        ("US=-0.01", "not an amount"),
        ("US=NaN", "not an amount"),
        ("US=Infinity", "not an amount"),
        ("US=0.01,us=0.02", "US is listed twice"),
    ],
)
def test_bad_price_table_is_rejected_with_a_clear_message(text: str, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        messages.parse_price_table(text)
