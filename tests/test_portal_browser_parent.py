"""The parent app in chromium, as a parent uses it: a signed-out deep link returns there
after sign-in; the pairing page's choices survive a wrong code; deleting a conversation
asks first, can be undone, and is done after the undo window."""

from __future__ import annotations

from pathlib import Path

from support.browser import browser, running_portal
from support.portal import link_from, portal_env, portal_settings, seeded_family
from support.waiting import wait_until


def test_deep_link_consent_kept_on_error_confirm_and_undo(database, smtp, tmp_path: Path):
    port, sink = smtp
    config = portal_settings(database.dsn, port, tmp_path, "http://localhost", undo_s=2)
    config["fleet"] = {"wait_s": 2}  # no fleet service here: a code gets an error in 2 s
    email = "lee@example.org"
    with database.connect() as conn:
        family = seeded_family(conn, config, email)
    pairing, conversation = family["pairing_id"], family["conversations"][0]
    with running_portal(portal_env(config), tmp_path / "portal.log") as base, \
            browser() as chromium:
        page = chromium.new_page()
        deep = f"{base}/bears/{pairing}/conversations/{conversation}"
        page.goto(deep)  # signed out: sign in first, then back here
        assert "/signin?next=" in page.url
        page.get_by_label("E-mail address").fill(email)
        page.get_by_role("button", name="Send me a sign-in link").click()
        page.get_by_text("We sent a sign-in link").wait_for()
        page.goto(link_from(sink, email))
        page.get_by_role("button", name="Sign in").click()
        page.wait_for_url(deep)
        with database.connect() as conn:  # no bear to tell: the cloud side alone
            conn.execute("UPDATE pairings SET status = 'unpaired' WHERE pairing_id = %s",
                         (pairing,))

        page.goto(f"{base}/pair")
        keep = page.get_by_label("Keep conversations on the bear")
        send = page.get_by_label("Send them to this app")
        name = page.get_by_label("Remember your child's first name")
        assert not (keep.is_checked() or send.is_checked() or name.is_checked())
        keep.check()
        name.check()
        page.get_by_label("I have read the privacy notice").check()
        page.get_by_role("textbox", name="Child's first name").fill("Ada")
        page.get_by_label("The code the bear said").fill("000000000000")
        page.get_by_role("button", name="Pair the bear").click()
        page.get_by_role("alert").wait_for()
        assert keep.is_checked() and name.is_checked() and not send.is_checked()
        assert page.get_by_label("I have read the privacy notice").is_checked()
        assert page.get_by_role("textbox", name="Child's first name").input_value() == "Ada"
        assert page.get_by_label("The code the bear said").input_value() == "000000000000"

        page.goto(deep)
        page.get_by_role("button", name="Delete this conversation").click()
        page.get_by_role("button", name="Yes, delete it").click()
        page.get_by_role("button", name="Undo").click()
        page.get_by_text("is still there").wait_for()
        assert _turns(database, conversation) == 4

        page.goto(deep)
        page.get_by_role("button", name="Delete this conversation").click()
        page.get_by_text("You can undo it for 2 seconds").wait_for()
        page.get_by_role("button", name="Yes, delete it").click()
        page.get_by_text("Deleting the conversation of").wait_for()
        page.get_by_text("Deleted the conversation of").wait_for(timeout=15000)  # refreshes
        assert "(4 turns)" in page.inner_text("main")
        wait_until(lambda: _turns(database, conversation) == 0, 5, "the turns deleted")


def _turns(database, conversation: str) -> int:
    with database.connect() as conn:
        return conn.execute("SELECT count(*) FROM turns WHERE conversation_id = %s",
                            (conversation,)).fetchone()[0]
