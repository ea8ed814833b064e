"""The routes of the parent app (see :mod:`sync.cloud.portal.app`)."""

from __future__ import annotations

import logging
from typing import Annotated, Any

from fastapi import Depends, Request

from config.errors import TeddyError
from config.settings import Settings
from sync.cloud.pairing import PairingError
from sync.cloud.portal import (
    auth,
    clients,
    deleting,
    feedback,
    history,
    inbox,
    notice,
    undo,
    words,
)
from sync.cloud.portal.app import (
    PRE_COOKIE,
    SESSION_COOKIE,
    check_csrf,
    connection,
    export_text,
    read_connection,
    read_form,
    signed_in,
    to_json,
)
from sync.cloud.portal.service import SCOPES, FamilyService, NotFoundError, PortalInputError

logger = logging.getLogger(__name__)


class SignInNeeded(TeddyError, PermissionError):
    """A family page without a session."""


def client_of(request: Any) -> str:
    """The client's address (``X-Forwarded-For`` only from ``portal.trusted_proxies``)."""
    return clients.client_of(request)


def family(request: Request, conn: Annotated[Any, Depends(connection)],
           reads: Annotated[Any, Depends(read_connection)]) -> FamilyService:
    """The signed-in parent's family (:class:`SignInNeeded` without a session); its
    transcript reads go to the replica when ``portal.read_dsn`` is set."""
    found = signed_in(request, conn)
    if found is None:
        raise SignInNeeded()
    return FamilyService(request.app.state.settings, conn, found[0], reads=reads)


Conn = Annotated[Any, Depends(connection)]
Form = Annotated[dict, Depends(read_form)]
Fam = Annotated[FamilyService, Depends(family)]


def posted(request: Any, fam: FamilyService, raw: dict[str, Any]) -> dict[str, Any]:
    """The form of a signed-in parent's POST, if its CSRF token is the session's."""
    return check_csrf(raw, request.state.signed[1])


def add_routes(app: Any, settings: Settings, page: Any, HTMLResponse: Any,  # noqa: N803
               PlainTextResponse: Any, RedirectResponse: Any) -> None:  # noqa: N803
    """Register every page on ``app``."""

    @app.exception_handler(SignInNeeded)
    def sign_in_needed(request: Request, exc: SignInNeeded):
        if request.method == "GET":
            return RedirectResponse(words.signin_url(request.url.path, request.url.query),
                                    status_code=303)
        return page(request, "message.html", 403, title="Please sign in",
                    message="You are not signed in (or your session ended).",
                    link=("/signin", "Sign in"))

    def back(url: str) -> Any:
        return RedirectResponse(url, status_code=303)

    # --- signing in ----------------------------------------------------------------------

    @app.get("/")
    def home(request: Request, conn: Conn):
        return back("/bears" if signed_in(request, conn) else "/signin")

    @app.get("/signin")
    def signin_form(request: Request):
        return page(request, "signin.html", title="Sign in",
                    next_path=words.safe_next(request.query_params.get("next")),
                    signed_out=request.query_params.get("signed_out") == "1")

    @app.post("/signin")
    def signin_request(request: Request, conn: Conn, raw: Form):
        form = check_csrf(raw, request.cookies.get(PRE_COOKIE))
        email = str(form.get("email", ""))
        try:
            auth.request_link(settings, conn, email, client_of(request))
        except (PortalInputError, auth.RateLimitedError) as exc:
            status = 429 if isinstance(exc, auth.RateLimitedError) else 400
            return page(request, "signin.html", status, title="Sign in", error=str(exc),
                        email=email, next_path=words.safe_next(form.get("next")))
        except auth.MailError as exc:
            logger.error("sign-in mail failed: %s", exc)
            return page(request, "signin.html", 503, title="Sign in", email=email,
                        next_path=words.safe_next(form.get("next")),
                        error="We could not send the e-mail just now. Please try again later.")
        answer = page(request, "message.html", title="Check your e-mail",
                      message=f"We sent a sign-in link to {email}. It works once, for "
                              f"{settings.portal.link_ttl_s / 60:g} minutes.")
        return words.remember_next(answer, form.get("next"), settings)

    @app.get("/signin/{token}")
    def signin_confirm(request: Request, token: str):
        return page(request, "confirm.html", title="Sign in", token=token)

    @app.post("/signin/{token}")
    def signin_redeem(request: Request, token: str, conn: Conn, raw: Form):
        check_csrf(raw, request.cookies.get(PRE_COOKIE))
        email = auth.redeem(conn, token)
        if email is None:
            return page(request, "message.html", 400, title="This link does not work",
                        message="Sign-in links work once and only for a short while. "
                                "Ask for a new one.", link=("/signin", "Ask for a new link"))
        parent = auth.parent_for(conn, email)
        response = back(words.safe_next(request.cookies.get(words.NEXT_COOKIE)) or "/bears")
        response.delete_cookie(words.NEXT_COOKIE, path="/")
        response.set_cookie(SESSION_COOKIE, auth.start_session(settings, conn, parent),
                            max_age=int(settings.portal.session_ttl_s), httponly=True,
                            secure=settings.portal.secure_cookies, samesite="strict", path="/")
        response.delete_cookie(PRE_COOKIE, path="/")
        return response

    @app.post("/signout")
    def signout(request: Request, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        auth.end_session(fam.conn, request.cookies.get(SESSION_COOKIE),
                         everywhere=form.get("everywhere") == "yes")
        response = back("/signin?signed_out=1")
        response.delete_cookie(SESSION_COOKIE, path="/")
        return response

    inbox.add_inbox_routes(app, page, RedirectResponse)  # /alerts: the wellbeing inbox

    # --- the family ----------------------------------------------------------------------

    @app.get("/bears")
    def dashboard(request: Request, fam: Fam):
        bears = fam.bears()
        return page(request, "dashboard.html", title="Your bears", bears=bears,
                    alerts=fam.alerts(limit=5), deletions=fam.deletions()[:5], zone=fam.zone)

    @app.get("/pair")
    def pair_form(request: Request, fam: Fam):
        return page(request, "pair.html", title="Pair a bear", notice=notice.current(),
                    scopes=SCOPES)

    @app.post("/pair")
    def pair(request: Request, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        current = notice.current()
        chosen = tuple(s for s in SCOPES if s in form["_multi"].getlist("scope"))
        error = None
        if form.get("read_notice") != "yes" or form.get("notice_version") != current.version:
            error = "Please read the privacy notice and tick the box to say you have."
        elif "sync" in chosen and "keep" not in chosen:
            error = ("“Send them to this app” needs “Keep conversations on the bear” too: "
                     "tick both, or neither.")
        if error is None:
            try:
                from sync.cloud import fleet_requests  # the fleet service approves it

                paired = fleet_requests.pair(
                    fam.conn, fam.parent.family_id, fam.parent.parent_id, fam.parent.email,
                    str(form.get("code", "")).strip(), chosen, settings.fleet.wait_s,
                    client_of(request))
                pairing_id = fam.adopt_pairing(
                    paired["device_id"], str(form.get("child_name", "")).strip(), chosen,
                    (current.version, current.sha256), client_of(request))
                return back(f"/bears/{pairing_id}?paired=1")
            except PairingError as exc:
                error = words.capitalised(str(exc))
        return page(request, "pair.html", 400, title="Pair a bear", notice=current,
                    scopes=SCOPES, error=error, **_typed_on_pair(form, chosen))

    @app.get("/bears/{pairing_id}")
    def bear(request: Request, pairing_id: str, fam: Fam):
        found = fam.pairing(pairing_id)
        return page(request, "bear.html", title="Your bear", bear=found,
                    deletions=fam.deletions(pairing_id)[:5], releases=fam.releases(),
                    config=feedback.config_state(fam.conn, found["device_id"]))

    @app.post("/bears/{pairing_id}/settings")
    def bear_settings(request: Request, pairing_id: str,
                            fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        bear = fam.pairing(pairing_id)
        try:
            fam.configure(pairing_id, _settings_from(form))
        except PortalInputError as exc:
            return page(request, "bear.html", 400, title="Your bear", bear=bear,
                        deletions=fam.deletions(pairing_id)[:5],
                        error=words.config_error(str(exc)), typed=form)
        return back(f"/bears/{pairing_id}?saved=1")

    @app.get("/bears/{pairing_id}/conversations")
    def conversations(request: Request, pairing_id: str, fam: Fam):
        bear = fam.pairing(pairing_id)
        days: dict[str, list] = {}
        for c in fam.conversations(pairing_id):
            days.setdefault(c["day"], []).append(c)
        return page(request, "conversations.html", title="What was said", bear=bear,
                    days=days, about=history.summaries(fam, pairing_id),
                    today=history.today(settings, fam.zone))

    @app.get("/bears/{pairing_id}/conversations/{conversation_id}")
    def transcript(request: Request, pairing_id: str, conversation_id: str,
                   fam: Fam):
        bear = fam.pairing(pairing_id)
        return page(request, "transcript.html", title="Conversation", bear=bear,
                    conversation_id=conversation_id,
                    turns=fam.transcript(pairing_id, conversation_id))

    @app.get("/bears/{pairing_id}/conversations/{conversation_id}/delete")
    def confirm_delete_conversation(request: Request, pairing_id: str, conversation_id: str,
                                    fam: Fam):
        what, _ids = deleting.conversation(fam, pairing_id, conversation_id)
        return page(request, "confirm_delete.html", title="Delete this conversation?",
                    bear=fam.pairing(pairing_id), what=what, undo_s=settings.portal.undo_s,
                    action=request.url.path,
                    cancel=f"/bears/{pairing_id}/conversations/{conversation_id}")

    @app.post("/bears/{pairing_id}/conversations/{conversation_id}/delete")
    def delete_conversation(request: Request, pairing_id: str, conversation_id: str,
                                  fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        if form.get("confirm") != "yes":
            return back(request.url.path)
        what, ids = deleting.conversation(fam, pairing_id, conversation_id)
        return back(f"/deletions/{undo.schedule(fam, pairing_id, what, ids)}")

    @app.get("/bears/{pairing_id}/days/{day}/delete")
    def confirm_delete_day(request: Request, pairing_id: str, day: str, fam: Fam):
        what, _ids = deleting.day(fam, pairing_id, day)
        return page(request, "confirm_delete.html", title="Delete this day?",
                    bear=fam.pairing(pairing_id), what=what, undo_s=settings.portal.undo_s,
                    action=request.url.path, cancel=f"/bears/{pairing_id}/conversations")

    @app.post("/bears/{pairing_id}/days/{day}/delete")
    def delete_day(request: Request, pairing_id: str, day: str,
                         fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        if form.get("confirm") != "yes":
            return back(request.url.path)
        what, ids = deleting.day(fam, pairing_id, day)
        return back(f"/deletions/{undo.schedule(fam, pairing_id, what, ids)}")

    @app.post("/deletions/{deletion_id}/undo")
    def undo_deletion(request: Request, deletion_id: str, fam: Fam, raw: Form):
        posted(request, fam, raw)
        fam.deletion(deletion_id)  # this family's, or 404
        waiting = undo.pending(fam, deletion_id)
        if waiting is not None and undo.undo(fam, deletion_id):
            return page(request, "message.html", title="Not deleted",
                        message=f"Undone: {waiting['scope']} is still there.",
                        link=(f"/bears/{waiting['pairing_id']}/conversations",
                              "Back to the conversations"))
        return page(request, "message.html", 409, title="Too late to undo",
                    message="That deletion was already done.",
                    link=(f"/deletions/{deletion_id}", "See what was deleted"))

    @app.post("/bears/{pairing_id}/delete")
    def delete_all(request: Request, pairing_id: str,
                         fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        fam.pairing(pairing_id)
        if form.get("confirm") != "yes":
            return back(f"/bears/{pairing_id}?confirm=delete")
        return back(f"/deletions/{fam.delete(pairing_id, 'everything')}")

    @app.post("/bears/{pairing_id}/revoke")
    def revoke(request: Request, pairing_id: str, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        fam.pairing(pairing_id)
        if form.get("confirm") != "yes":
            return back(f"/bears/{pairing_id}?confirm=revoke")
        return back(f"/deletions/{fam.revoke(pairing_id)}")

    @app.get("/bears/{pairing_id}/export.json")
    def export_bear_json(request: Request, pairing_id: str,
                         fam: Fam):
        bear = fam.pairing(pairing_id)
        data = _one_bear(fam.export(), bear["pairing_id"])
        return PlainTextResponse(to_json(data), media_type="application/json",
                                 headers=words.attachment(bear["child_name"], "json"))

    @app.get("/bears/{pairing_id}/export.txt")
    def export_bear_text(request: Request, pairing_id: str,
                         fam: Fam):
        bear = fam.pairing(pairing_id)
        data = _one_bear(fam.export(), bear["pairing_id"])
        return PlainTextResponse(export_text(data),
                                 headers=words.attachment(bear["child_name"], "txt"))

    @app.get("/export.json")
    def export_json(request: Request, fam: Fam):
        return PlainTextResponse(to_json(fam.export()), media_type="application/json",
                                 headers=words.attachment("family", "json"))

    @app.get("/export.txt")
    def export_txt(request: Request, fam: Fam):
        return PlainTextResponse(export_text(fam.export()),
                                 headers=words.attachment("family", "txt"))

    @app.get("/help")
    def help_page(request: Request, conn: Conn):
        signed_in(request, conn)
        return page(request, "help.html", title="Help")

    @app.get("/privacy")
    def privacy_page(request: Request, conn: Conn):
        signed_in(request, conn)
        return page(request, "privacy.html", title="Privacy notice", notice=notice.current())

    @app.get("/deletions/{deletion_id}")
    def deletion(request: Request, deletion_id: str, fam: Fam):
        undo.run_due(settings, fam.conn)
        waiting = undo.pending(fam, deletion_id)
        if waiting is not None:
            return page(request, "deletion_pending.html", title="Deleting…", pending=waiting)
        return page(request, "deletion.html", title="Deleted", deletion=fam.deletion(deletion_id))

    @app.get("/family")
    def family_page(request: Request, fam: Fam):
        return page(request, "family.html", title="Family", members=fam.members(),
                    retention=fam.retention_days())

    def family_error(request: Request, fam: FamilyService, exc: Exception):
        return page(request, "family.html", 400, title="Family", members=fam.members(),
                    retention=fam.retention_days(), error=str(exc))

    @app.post("/family/invite")
    def invite(request: Request, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        email = str(form.get("email", ""))
        try:
            token = fam.invite(email)
            send_invitation(settings, fam, email.strip(), token)
        except (PortalInputError, auth.MailError) as exc:
            return family_error(request, fam, exc)
        return page(request, "message.html", title="Invitation sent",  # same for every address
                    message=f"We e-mailed an invitation to {email.strip()}. They join your "
                            "family only if they open it and accept.", link=("/family", "Back"))

    @app.post("/family/invites/{invite_id}/cancel")
    def cancel_invite(request: Request, invite_id: str, fam: Fam, raw: Form):
        posted(request, fam, raw)
        fam.cancel_invite(invite_id)
        return back("/family")

    @app.post("/family/members/{parent_id}/remove")
    def remove_member(request: Request, parent_id: str, fam: Fam, raw: Form):
        posted(request, fam, raw)
        try:
            fam.remove_member(parent_id)
        except PortalInputError as exc:
            return family_error(request, fam, exc)
        return back("/family")

    @app.post("/family/leave")
    def leave(request: Request, fam: Fam, raw: Form):
        posted(request, fam, raw)
        try:
            fam.leave()
        except PortalInputError as exc:
            return family_error(request, fam, exc)
        return back("/bears")

    @app.get("/invites/{token}")
    def invitation(request: Request, token: str, conn: Conn):
        from sync.cloud import custody

        signed_in(request, conn)
        found = custody.pending_invite(conn, token)
        if found is None:
            raise NotFoundError("this invitation was used, cancelled or has expired")
        return page(request, "invite.html", title="An invitation", invite=found, token=token)

    @app.post("/invites/{token}/accept")
    def accept_invitation(request: Request, token: str, fam: Fam, raw: Form):
        from sync.cloud import custody

        posted(request, fam, raw)
        try:
            custody.accept(fam.conn, token, fam.parent.parent_id, fam.parent.email)
        except custody.CustodyError as exc:
            return page(request, "message.html", 400, title="This invitation does not work",
                        message=str(exc), link=("/bears", "Back"))
        return back("/bears")

    @app.post("/invites/{token}/decline")
    def decline_invitation(request: Request, token: str, fam: Fam, raw: Form):
        from sync.cloud import custody

        posted(request, fam, raw)
        custody.decline(fam.conn, token, fam.parent.email)
        return back("/bears")

    @app.post("/releases/{release_id}/{answer}")
    def answer_release(request: Request, release_id: str, answer: str, fam: Fam, raw: Form):
        posted(request, fam, raw)
        if answer not in ("approve", "object"):
            raise NotFoundError("no such answer")
        try:
            released = fam.decide_release(release_id, answer == "approve")
        except PortalInputError as exc:
            return page(request, "message.html", 400, title="Release", message=str(exc),
                        link=("/bears", "Back"))
        return page(request, "message.html", title="Release", link=("/bears", "Back"),
                    message="The bear was released: it can now be paired to the other account."
                    if released else "The bear stays in your family.")

    @app.post("/family/retention")
    def retention(request: Request, fam: Fam, raw: Form):
        form = posted(request, fam, raw)
        try:
            fam.set_retention(int(str(form.get("days", ""))))
        except (ValueError, PortalInputError):
            return page(request, "family.html", 400, title="Family", members=fam.members(),
                        retention=fam.retention_days(),
                        error="Choose how many days (1 to 30) to keep conversations.")
        return back("/family")


def mailer(settings: Settings) -> Any:
    """``(to, subject, body)`` through the sign-in mail's channel."""
    def send(to: str, subject: str, body: str) -> None:
        auth.send_mail(settings, to, subject, body)

    return send


def send_invitation(settings: Settings, fam: FamilyService, email: str, token: str) -> None:
    """Mail the invitation: who invites, what accepting means, the link to the accept page."""
    link = f"{settings.portal.base_url.rstrip('/')}/invites/{token}"
    days = settings.portal.invite_ttl_s / 86400
    auth.send_mail(settings, email, f"{fam.parent.email} invited you to their family on Teddy",
                   f"Hello,\n\n{fam.parent.email} invited you to join their family in Teddy's "
                   "parent app. If you accept, you will see their bears and what their "
                   "children said, and they will see everything of any bear you pair, "
                   "including what your child says to it.\n\nNothing happens unless you open "
                   f"this link, sign in and accept (it works for {days:g} days):\n\n{link}\n\n"
                   "If you do not know them, ignore this e-mail.\n")


def _typed_on_pair(form: dict[str, Any], chosen: tuple[str, ...]) -> dict[str, Any]:
    """What the parent typed and ticked on the pairing form, to show it again with an error
    (nothing is ticked that the parent did not tick)."""
    return {"chosen": chosen, "read_notice": form.get("read_notice") == "yes",
            "child_name": str(form.get("child_name", ""))[:60],
            "code": str(form.get("code", ""))[:16]}


def _one_bear(data: dict[str, Any], pairing_id: str) -> dict[str, Any]:
    return {**data, "bears": [b for b in data["bears"] if b["pairing_id"] == pairing_id],
            "alerts": [a for a in data["alerts"] if a["pairing_id"] == pairing_id]}


def _settings_from(form: dict[str, Any]) -> dict[str, Any]:
    """Desired config from the bear's settings form (empty fields are not sent)."""
    values: dict[str, Any] = {}
    try:
        if form.get("volume"):
            values["voice.tts_volume"] = int(str(form["volume"])) / 100
        if form.get("daily_limit"):
            values["play.daily_limit_min"] = int(str(form["daily_limit"]))
    except ValueError:
        raise PortalInputError("volume and time limit are whole numbers") from None
    if form.get("age_band"):
        values["dialogue.age_band"] = str(form["age_band"])
    quiet_from, quiet_until = str(form.get("quiet_from", "")), str(form.get("quiet_until", ""))
    if bool(quiet_from) != bool(quiet_until):
        raise PortalInputError("give both a start and an end for quiet hours (or neither)")
    values["play.quiet_from"] = quiet_from or None
    values["play.quiet_until"] = quiet_until or None
    if not values:
        raise PortalInputError("nothing to change")
    return values

