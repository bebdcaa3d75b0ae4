from __future__ import annotations

import re
import shutil
from pathlib import Path
from typing import Any

import pytest

from app.settings import Settings
from streams.core.content import CONTEXT, EmailRenderer
from streams.core.errors import ConfigError, RenderError

TEMPLATES = Settings().templates_dir


def product(n: int, category: str = "outdoor") -> dict[str, Any]:
    sku = f"{category[:3].upper()}-{n:03d}"
    return {
        "sku": sku,
        "name": f"{category.title()} item {n}",
        "category": category,
        "price": 10.0 + n,
        "url": f"https://shop/p/{sku}",
        "image_url": f"https://shop/images/{sku}.jpg",
        "reason": "popular",
    }


FULL: dict[str, Any] = {
    "user_id": "u1",
    "first_name": "Ann",
    "email": "ann@example.com",
    "locale": "en-GB",
    "country": "GB",
    "device": "mobile",
    "traits": {"first_name": "Ann", "vip": True},
    "segments": ["big_spenders", "highly_engaged"],
    "engagement": "high",
    "interests": ["outdoor", "running"],
    "top_interest": "outdoor",
    "cart": {"cart_id": "c1", "items": [product(1) | {"quantity": 2}, product(2)]},
    "recent_purchases": [],
    "recommendations": [product(n, "running") for n in range(8)],
    "popular": [product(n, "books") for n in range(8)],
    "flow": "welcome",
    "step": 1,
    "variant": None,
    "shop_url": "https://shop",
    "postal_address": "1 Harbour Street, Leith",
    "unsubscribe_url": "https://shop/unsubscribe?token=t0k3n",
}


@pytest.fixture(scope="module")
def renderer() -> EmailRenderer:
    return EmailRenderer(TEMPLATES, defaults={"brand": "Shop"})


@pytest.fixture
def library(tmp_path: Path) -> Path:
    copy = tmp_path / "templates"
    shutil.copytree(TEMPLATES, copy)
    return copy


def test_the_library_has_the_flows_emails(renderer: EmailRenderer) -> None:
    assert set(renderer.versions) == {
        "welcome",
        "welcome_browsed",
        "welcome_discover",
        "welcome_picks",
        "cart_reminder",
        "winback",
    }
    assert all(re.fullmatch(r"[0-9a-f]{12}", v) for v in renderer.versions.values())


@pytest.mark.parametrize("name", ["welcome", "cart_reminder", "winback"])
@pytest.mark.parametrize("context", [FULL, {}], ids=["full", "empty"])
def test_every_email_renders_all_parts_with_full_and_empty_context(
    renderer: EmailRenderer, name: str, context: dict[str, Any]
) -> None:
    email = renderer.render(name, context)
    assert email.subject and "\n" not in email.subject and email.preheader
    assert email.html.startswith("<!doctype html>") and "</html>" in email.html
    # MJML compiled to responsive HTML: a media query for wide screens, tables for Outlook.
    assert "@media only screen and (min-width:480px)" in email.html
    assert "{{" not in email.html and "[%" not in email.html and "{%" not in email.text
    assert email.text.endswith("\n") and "Unsubscribe:" in email.text


def test_greeting_uses_the_name_or_a_default(renderer: EmailRenderer) -> None:
    named = renderer.render("welcome", FULL)
    assert "Hi Ann," in named.html and named.text.startswith("Hi Ann,")
    anonymous = renderer.render("welcome", {})
    assert "Hi there," in anonymous.html and anonymous.text.startswith("Hi there,")


def test_recommended_products_show_six_and_fall_back_to_popular(renderer: EmailRenderer) -> None:
    picked = renderer.render("welcome", FULL)
    assert "Picked for you" in picked.html and picked.html.count('alt="Running item') == 6
    assert "Running item 5" in picked.text and "Running item 6" not in picked.text
    fallback = renderer.render("welcome", {**FULL, "recommendations": []})
    assert "Popular right now" in fallback.html and "Books item 0" in fallback.html
    neither = renderer.render("welcome", {**FULL, "recommendations": [], "popular": []})
    assert "Popular right now" not in neither.html and "Picked for you" not in neither.html


def test_cart_reminder_lists_the_cart_and_names_it_in_the_subject(renderer: EmailRenderer) -> None:
    email = renderer.render("cart_reminder", FULL)
    assert email.subject == "Ann, you left Outdoor item 1 and 1 more in your cart"
    assert "In your cart" in email.html and "https://shop/p/OUT-002" in email.html
    assert "- Outdoor item 2 (12.00): https://shop/p/OUT-002" in email.text
    assert renderer.render("cart_reminder", {}).subject == "You left something in your cart"


def test_segment_offer_follows_segments_and_engagement(renderer: EmailRenderer) -> None:
    vip = renderer.render("winback", FULL)
    assert "early access to new arrivals in outdoor" in vip.html and "COMEBACK15" not in vip.html
    lapsed = renderer.render("winback", {**FULL, "segments": ["lapsed"], "engagement": "lapsed"})
    assert "COMEBACK15" in lapsed.html and "COMEBACK15" in lapsed.text and "early access" not in lapsed.html
    assert "COMEBACK15" not in renderer.render("winback", {**FULL, "segments": [], "engagement": "new"}).html


@pytest.mark.parametrize(
    ("country", "offer"),
    [("GB", "next-day delivery anywhere in the UK"), ("AT", "Versand nach Österreich"), ("FR", "Livraison offerte")],
)
def test_location_offer_follows_the_country(renderer: EmailRenderer, country: str, offer: str) -> None:
    email = renderer.render("welcome", {**FULL, "country": country})
    assert offer in email.html and offer in email.text
    assert offer not in renderer.render("welcome", {**FULL, "country": "JP"}).html


def test_footer_carries_unsubscribe_link_and_postal_address(renderer: EmailRenderer) -> None:
    email = renderer.render("welcome", FULL)
    for part in (email.html, email.text):
        assert "https://shop/unsubscribe?token=t0k3n" in part and "1 Harbour Street, Leith" in part


def test_device_adds_an_app_nudge_for_phones_only(renderer: EmailRenderer) -> None:
    nudge = "Reading on your phone?"
    phone = renderer.render("welcome", FULL)
    assert nudge in phone.html and nudge in phone.text
    assert nudge not in renderer.render("welcome", {**FULL, "device": "desktop"}).html


def test_subject_lines_follow_interests_with_fallbacks(renderer: EmailRenderer) -> None:
    assert renderer.render("welcome", FULL).subject == "Gear up for your next adventure, Ann!"
    assert renderer.render("welcome", {**FULL, "top_interest": "books"}).subject == "Welcome to Shop, Ann!"
    assert renderer.render("welcome", {}).subject == "Welcome to Shop!"
    assert renderer.render("welcome", FULL).preheader == "Fresh picks in outdoor, chosen for you."


def test_html_injection_through_a_name_is_escaped(renderer: EmailRenderer) -> None:
    email = renderer.render("welcome", {**FULL, "first_name": "<script>alert(1)</script>"})
    assert "<script>" not in email.html
    assert "&lt;script&gt;alert(1)&lt;/script&gt;" in email.html


@pytest.mark.parametrize(
    "expression",
    [
        "''.__class__.__mro__[1].__subclasses__()",
        "traits.__class__.__init__.__globals__",
        "cycler.__init__.__globals__.os",
    ],
)
def test_sandbox_refuses_reaching_into_python(library: Path, expression: str) -> None:
    (library / "emails/welcome/subject.txt.j2").write_text("{{ " + expression + " }}")
    renderer = EmailRenderer(library, defaults={})
    with pytest.raises(RenderError, match=r"unsafe|undefined"):
        renderer.render("welcome", FULL)


def test_assembly_runs_in_the_sandbox_too(library: Path) -> None:
    (library / "emails/welcome/subject.txt.j2").write_text("[[ ''.__class__.__mro__[1].__subclasses__() ]]")
    with pytest.raises(ConfigError, match="unsafe"):
        EmailRenderer(library, defaults={})


def test_syntax_error_stops_start_up_with_file_and_line(library: Path) -> None:
    (library / "emails/welcome/body.txt.j2").write_text("line one\n{% if %}\n")
    with pytest.raises(ConfigError, match=r"emails/welcome/body.txt.j2:2: "):
        EmailRenderer(library, defaults={})


def test_syntax_error_in_a_shared_block_names_the_block(library: Path) -> None:
    block = library / "blocks/segment_offer.mjml.j2"
    block.write_text("    <mj-section><mj-column>\n<mj-text>{% if offer %}</mj-text></mj-column></mj-section>\n")
    with pytest.raises(ConfigError, match=r"blocks/segment_offer.mjml.j2:2: "):
        EmailRenderer(library, defaults={})


def test_unknown_context_field_stops_start_up_with_file_and_line(library: Path) -> None:
    block = library / "blocks/greeting.mjml.j2"
    block.write_text(block.read_text().replace("{{ first_name }}", "{{ frist_name }}"))
    with pytest.raises(ConfigError, match=r"blocks/greeting.mjml.j2:3: unknown context field `frist_name`"):
        EmailRenderer(library, defaults={})


def test_invalid_mjml_stops_start_up(library: Path) -> None:
    body = library / "emails/winback/body.mjml.j2"
    body.write_text(body.read_text().replace("<mj-section>", "<mj-section", 1))
    with pytest.raises(ConfigError, match=r"emails/winback/body.mjml.j2: not valid MJML"):
        EmailRenderer(library, defaults={})


def test_missing_part_stops_start_up(library: Path) -> None:
    (library / "emails/welcome/preheader.txt.j2").unlink()
    with pytest.raises(ConfigError, match=r"template 'welcome' is missing emails/welcome/preheader\.txt\.j2"):
        EmailRenderer(library, defaults={})


def test_failure_at_render_time_names_template_and_version(library: Path) -> None:
    (library / "emails/welcome/subject.txt.j2").write_text("{{ traits.age // 0 }}")
    renderer = EmailRenderer(library, defaults={})
    with pytest.raises(RenderError, match=r"template 'welcome' \([0-9a-f]{12}\) failed: ZeroDivisionError"):
        renderer.render("welcome", {"traits": {"age": 3}})


def test_version_changes_when_an_included_block_changes(library: Path) -> None:
    before = EmailRenderer(library, defaults={}).versions
    footer = library / "blocks/footer.mjml.j2"
    footer.write_text(footer.read_text() + "<!-- changed -->")
    after = EmailRenderer(library, defaults={}).versions
    assert all(after[name] != before[name] for name in before)


def test_every_context_field_and_no_other_is_documented_in_the_template_context_table() -> None:
    section = (TEMPLATES.parent / "docs/content.md").read_text().split("\n## Template context\n", 1)[1]
    section = section.split("\n## ", 1)[0]
    documented = re.findall(r"^\| `(\w+)` \|", section, re.MULTILINE)
    assert documented == list(CONTEXT)
