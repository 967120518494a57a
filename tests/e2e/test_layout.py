"""Every main page works on a phone (375 px: nothing scrolls sideways) and on a desktop (1280 px:
the header, with its navigation and language menu, stays one row), in English and Korean; the
language menu applies on selection, without a button press."""

import pytest
from django.conf import settings

from tests.e2e.conftest import sign_in

pytestmark = [pytest.mark.e2e, pytest.mark.django_db(transaction=True)]

OVERFLOW = """() => {
  const width = document.documentElement.clientWidth;
  const wide = [...document.querySelectorAll('body *')]
    .filter(e => e.getBoundingClientRect().right > width + 1 && getComputedStyle(e).position !== 'absolute')
    .filter(e => !e.closest('pre, .table-scroll, svg'))
    .slice(0, 5).map(e => e.tagName + '.' + e.className + ' ' + Math.round(e.getBoundingClientRect().right));
  return {scroll: document.documentElement.scrollWidth, width, wide};
}"""

HEADER_ROWS = """() => {
  const items = [...document.querySelectorAll('.site-header .brand, .site-header nav > *, .site-header .language')]
    .filter(e => e.getClientRects().length);
  const centres = items.map(e => { const r = e.getBoundingClientRect(); return Math.round(r.top + r.height / 2); });
  const header = document.querySelector('.site-header').getBoundingClientRect().height;
  return {spread: Math.max(...centres) - Math.min(...centres), nav: header};
}"""


# Table cells holding one Korean word (no space) drawn on more than one line: the word was split.
SPLIT_WORDS = """() => [...document.querySelectorAll('th, td')]
  .filter(e => /[\\uac00-\\ud7a3]/.test(e.textContent) && !/\\s/.test(e.textContent.trim()))
  .filter(e => e.getClientRects().length)
  .filter(e => { const r = document.createRange(); r.selectNodeContents(e);
                 return new Set([...r.getClientRects()].map(c => Math.round(c.top))).size > 1; })
  .map(e => e.textContent.trim())"""


def walk(page, paths: list[str]):
    for path in paths:
        response = page.goto(path)
        assert response.status == 200, path
        yield path


@pytest.mark.parametrize("language", ["en", "ko"])
def test_every_main_page_fits_a_phone_and_keeps_the_desktop_header_on_one_row(
    browser, live_server, main_pages, language
):
    user, public, signed_in = main_pages
    context = browser.new_context(base_url=live_server.url, locale="en-US" if language == "en" else "ko-KR")
    context.add_cookies([{"name": "django_language", "value": language, "url": live_server.url}])
    page = context.new_page()
    try:
        for signed in (False, True):
            if signed:
                sign_in(page, user.email, settings.DEMO_PASSWORD)
            for path in walk(page, signed_in if signed else public):
                page.set_viewport_size({"width": 375, "height": 800})
                fit = page.evaluate(OVERFLOW)
                assert fit["scroll"] <= fit["width"], (language, path, fit)
                page.set_viewport_size({"width": 1280, "height": 800})
                rows = page.evaluate(HEADER_ROWS)
                assert rows["spread"] <= 4 and rows["nav"] < 80, (language, path, rows)
                page.set_viewport_size({"width": 720, "height": 800})  # a tablet: tables squeezed, not stacked
                assert page.evaluate(SPLIT_WORDS) == [], (language, path)
        # Staff have one link more (Administration): still one row, on a phone still no scroll.
        type(user).objects.filter(pk=user.pk).update(is_staff=True)
        page.set_viewport_size({"width": 1280, "height": 800})
        page.goto("/calls/")
        assert page.locator(".site-header nav a[href='/admin/']").count() == 1
        rows = page.evaluate(HEADER_ROWS)
        assert rows["spread"] <= 4 and rows["nav"] < 80, (language, "staff", rows)
        page.set_viewport_size({"width": 375, "height": 800})
        fit = page.evaluate(OVERFLOW)
        assert fit["scroll"] <= fit["width"], (language, "staff", fit)
    finally:
        context.close()


def test_the_language_applies_on_selection_and_the_button_is_hidden(page, main_pages):
    page.goto("/calls/")
    assert page.locator("form.language button[type=submit]").is_hidden()
    with page.expect_navigation():
        page.select_option("#language-select", "ko")
    assert page.locator("html").get_attribute("lang") == "ko"
    assert "공모" in page.inner_text(".site-header")
    assert page.csp_violations == []


def test_without_javascript_the_language_button_is_there_and_works(browser, live_server, main_pages):
    context = browser.new_context(base_url=live_server.url, locale="en-US", java_script_enabled=False)
    page = context.new_page()
    try:
        page.goto("/calls/")
        assert page.locator("form.language button[type=submit]").is_visible()
        page.select_option("#language-select", "ko")
        page.click("form.language button[type=submit]")
        page.wait_for_load_state()
        assert page.locator("html").get_attribute("lang") == "ko"
    finally:
        context.close()
