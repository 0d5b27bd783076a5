"""The console, driven in headless Chromium by Playwright.

Run by core/tests/console.rs against a dispatcher it set up; every input
comes from the environment (CONSOLE_URL, TENANT_TOKEN, TENANT_BOT,
OTHER_BOT, MESSAGE_ID, SCREENSHOTS, CHROMIUM). Exits non-zero, saying what
was expected, on the first check that fails.
"""

import os
import re
import sys

from playwright.sync_api import expect, sync_playwright

URL = os.environ["CONSOLE_URL"]
TOKEN = os.environ["TENANT_TOKEN"]
BOT = os.environ["TENANT_BOT"]
OTHER = os.environ["OTHER_BOT"]
MESSAGE = os.environ["MESSAGE_ID"]
SHOTS = os.environ["SCREENSHOTS"]
CHROMIUM = os.environ.get("CHROMIUM", "/usr/bin/chromium")
TIMEOUT = 15_000  # ms: a bound for a stuck page, not a speed check


def shot(page, name):
    page.screenshot(path=os.path.join(SHOTS, name + ".png"), full_page=True)
    print("screenshot", name)


def never_shows_other_tenant(page, where):
    text = page.locator("body").inner_text()
    if OTHER in text:
        sys.exit(f"{where}: the other tenant's bot {OTHER!r} is visible: {text[:500]}")


def sign_in(page, token):
    page.goto(URL)
    page.get_by_label("Admin token").fill(token)
    page.get_by_role("button", name="Sign in").click()


def main():
    with sync_playwright() as p:
        browser = p.chromium.launch(executable_path=CHROMIUM, headless=True,
                                    args=["--no-sandbox"])
        page = browser.new_page(viewport={"width": 1280, "height": 900})
        page.set_default_timeout(TIMEOUT)
        expect.set_options(timeout=TIMEOUT)

        # A wrong token is refused, and says so.
        sign_in(page, "not-a-token")
        expect(page.get_by_role("alert")).to_contain_text("not an admin token")
        expect(page.get_by_role("navigation")).to_be_hidden()
        shot(page, "sign-in-refused")

        # The tenant's overview: its bot only, with a chart and counts.
        sign_in(page, TOKEN)
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()
        expect(page.get_by_role("link", name=BOT, exact=True)).to_be_visible()
        expect(page.locator(".chart")).to_have_count(1)
        expect(page.locator("dl.counts")).to_contain_text("Pending now")
        never_shows_other_tenant(page, "overview")
        shot(page, "overview")

        # Keyboard: focus moves to the page's content on each page, so one
        # Tab reaches the bot's link and Enter opens it.
        page.keyboard.press("Tab")
        focused = page.evaluate("document.activeElement.textContent")
        if focused != BOT:
            sys.exit(f"one Tab should reach the {BOT!r} link, reached {focused!r}")
        # The page refreshes every 5 s; it must not take the focus away.
        page.wait_for_timeout(6_000)
        focused = page.evaluate("document.activeElement.textContent")
        if focused != BOT:
            sys.exit(f"a refresh moved the keyboard focus to {focused!r}")
        page.keyboard.press("Enter")
        expect(page.get_by_role("heading", name=f"Bot {BOT}")).to_be_visible()
        page.go_back()
        expect(page.get_by_role("heading", name="Overview")).to_be_visible()

        # The bot page: webhooks with health, then a search by message_id.
        page.get_by_role("link", name=BOT, exact=True).click()
        expect(page.get_by_role("heading", name=f"Bot {BOT}")).to_be_visible()
        expect(page.get_by_role("row", name=re.compile(r"^crm"))).to_contain_text("closed")
        expect(page.get_by_role("row", name=re.compile(r"^crm"))).to_contain_text("not held")
        page.get_by_label("Find by message_id or phone number").fill(MESSAGE)
        page.get_by_role("button", name="Search").click()
        expect(page.get_by_role("heading", name=f"Deliveries matching {MESSAGE}")).to_be_visible()
        rows = page.locator("tbody tr", has_text=MESSAGE)
        expect(rows).to_have_count(2)
        never_shows_other_tenant(page, "bot page")
        shot(page, "bot-search")

        # The crm delivery: every attempt, with the receiver's answers.
        page.locator("tbody tr", has_text="crm").get_by_role("link", name="Details").click()
        expect(page.get_by_role("heading", name=re.compile(r"^Delivery msg_"))).to_be_visible()
        attempts = page.locator("table").first
        expect(attempts.locator("tbody tr")).to_have_count(3)
        expect(attempts).to_contain_text("HTTP 503")
        expect(attempts).to_contain_text("busy, try later")
        expect(attempts).to_contain_text("HTTP 200")
        request = page.get_by_label("request")
        expect(request).to_contain_text("Authorization: Bearer ****")
        if "crm-secret-token" in page.content():
            sys.exit("the delivery page shows the webhook's secret")
        shot(page, "delivery")

        # Dead letters: the archive's 410, replayed, then delivered.
        page.get_by_role("link", name="Dead letters").click()
        expect(page.get_by_role("heading", name="Dead letters")).to_be_visible()
        options = page.locator("#dead-bot option").all_inner_texts()
        if options != [BOT]:
            sys.exit(f"the dead-letter bot list should be [{BOT!r}], is {options!r}")
        dead = page.locator("tbody tr", has_text="archive")
        expect(dead).to_have_count(1)
        expect(dead).to_contain_text("410")
        dead.get_by_role("button", name="Replay").click()
        expect(page.locator(".result")).to_have_text("Replayed 1 delivery.")
        shot(page, "dead-letters-replayed")
        dead.get_by_role("link", name="Details").click()
        outcome = page.locator("dl.counts")
        for _ in range(100):
            if "delivered" in outcome.inner_text():
                break
            page.wait_for_timeout(200)
            page.reload()
        expect(outcome).to_contain_text("✓ delivered")

        # Another tenant's bot appears nowhere, not even by its URL.
        page.goto(URL + "#/bot/" + OTHER)
        expect(page.get_by_role("heading", name="Bot not found")).to_be_visible()

        # The playground: the exact request, sent nowhere.
        page.get_by_role("link", name="Playground").click()
        expect(page.get_by_role("heading", name="Plugin playground")).to_be_visible()
        webhooks = page.locator("#pg-webhook option").all_inner_texts()
        if any(OTHER in w for w in webhooks) or not webhooks:
            sys.exit(f"the playground lists {webhooks!r}")
        page.get_by_label("Webhook", exact=True).select_option(f"{BOT}/crm")
        page.get_by_role("button", name="Render").click()
        rendered = page.get_by_label("rendered request")
        expect(rendered).to_contain_text("POST http://")
        expect(rendered).to_contain_text("webhook-id: msg_")
        expect(rendered).to_contain_text('"status":"READ"')
        shot(page, "playground")

        # The config: the tenant's own section, secrets redacted.
        page.get_by_role("link", name="Config").click()
        expect(page.get_by_label("effective config")).to_contain_text("<redacted>")
        never_shows_other_tenant(page, "config")
        shot(page, "config")

        # A phone's width.
        page.set_viewport_size({"width": 390, "height": 844})
        page.get_by_role("link", name="Overview").click()
        expect(page.get_by_role("link", name=BOT, exact=True)).to_be_visible()
        # The chart fills in by itself as samples arrive (every 5 s), with
        # no reload.
        expect(page.locator("svg.chart")).to_have_count(1, timeout=40_000)
        shot(page, "overview-phone")

        browser.close()
    print("console checks passed")


if __name__ == "__main__":
    main()
