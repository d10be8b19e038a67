"""Members: an account per configured e-mail, made through the invite sign-up, and removed
from the organization when the e-mail leaves the list.

Label Studio 1.23.2's `POST /api/users/` stores no password, so such a user could never log
in. The sign-up form does: with the organization's invite token it creates the user, adds
them to the organization and answers 302; an existing e-mail or a refused password answers
200 with the form's errors. Removal (`DELETE /api/organizations/{id}/memberships/{user}/`)
is a soft delete: the e-mail can neither sign up again nor be added back through the API.

The reconciler removes only accounts it created. It records their e-mails in the team
Secret (key created-members) right after each sign-up, so an account that existed before
the list named it is reported "present, not managed" and is never removed.
"""

from __future__ import annotations

import html
import http.cookies
import json
import re
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Callable, Iterable, Optional

from reconciler.client import REQUEST_TIMEOUT_SECONDS, LabelStudioClient, one_line
from reconciler.contract import CREATED_MEMBERS_KEY
from reconciler.errors import ReconcileError
from reconciler.team import TeamSecret

SIGNUP_PATH = "/user/signup/"
_CSRF_FIELD = re.compile(r'name="csrfmiddlewaretoken"\s+value="([^"]+)"')
_FIELD_ERROR = re.compile(r'<ul class="field_errors">(.*?)</ul>', re.S)
CANNOT_READD = ("was removed from the organization; Label Studio's open-source API cannot add a removed "
                "member back, nor can the e-mail sign up again")

# (email, password) -> None when the account was created, else the form's error text.
SignUp = Callable[[str, str], Optional[str]]


class _KeepRedirects(urllib.request.HTTPRedirectHandler):
    """The sign-up's 302 is the answer that matters: it is not followed."""

    def redirect_request(self, *args, **kwargs):
        return None


def _form_opener() -> urllib.request.OpenerDirector:
    return urllib.request.build_opener(_KeepRedirects)


def _open(opener: urllib.request.OpenerDirector, request: urllib.request.Request) -> tuple[int, object, bytes]:
    try:
        with opener.open(request, timeout=REQUEST_TIMEOUT_SECONDS) as response:
            return response.status, response.headers, response.read()
    except urllib.error.HTTPError as error:
        return error.code, error.headers, error.read()


def form_errors(page: bytes) -> str:
    """The texts of a refused form's error lists, e.g. 'User with this email already exists'."""
    texts = re.findall(r"<li>(.*?)</li>", " ".join(_FIELD_ERROR.findall(page.decode(errors="replace"))), re.S)
    return "; ".join(one_line(html.unescape(text)) for text in texts) or "the form was refused without a reason"


def form_post(base_url: str, path: str, fields: dict[str, str]) -> tuple[int, bytes]:
    """GET a Django form page for its CSRF cookie and token, then POST `fields` to it (no redirect followed)."""
    url = base_url.rstrip("/") + path
    opener = _form_opener()
    status, headers, page = _open(opener, urllib.request.Request(url))
    if status != 200:
        raise ReconcileError(f"GET {path.split('?')[0]} answered {status}")
    cookies = http.cookies.SimpleCookie()
    for header in headers.get_all("Set-Cookie") or []:
        cookies.load(header)
    token = _CSRF_FIELD.search(page.decode(errors="replace"))
    if "csrftoken" not in cookies or token is None:
        raise ReconcileError(f"{path.split('?')[0]} gave no CSRF token")
    body = urllib.parse.urlencode({**fields, "csrfmiddlewaretoken": token[1]}).encode()
    request = urllib.request.Request(url, data=body, method="POST", headers={
        "Content-Type": "application/x-www-form-urlencoded", "Referer": url,
        "Cookie": f"csrftoken={cookies['csrftoken'].value}"})
    status, _, answer = _open(opener, request)
    return status, answer


def invite_sign_up(base_url: str, invite_token: str) -> SignUp:
    """Sign-up through the invite link: 302 means the account exists now and can log in."""
    path = f"{SIGNUP_PATH}?{urllib.parse.urlencode({'token': invite_token})}"

    def sign_up(email: str, password: str) -> Optional[str]:
        status, page = form_post(base_url, path, {"email": email, "password": password})
        if status == 302:
            return None
        if status == 200:
            return form_errors(page)
        raise ReconcileError(f'member "{email}": sign-up answered {status}')
    return sign_up


@dataclass
class MemberCounts:
    created: int = 0
    present: int = 0
    removed: int = 0


class CreatedRecord:
    """The e-mails (lower case) of accounts the reconciler created, kept in the team Secret."""

    def __init__(self, secret: TeamSecret):
        self._secret = secret
        self.emails = set(json.loads(secret.read().get(CREATED_MEMBERS_KEY) or "[]"))

    def add(self, email: str) -> None:
        self.emails.add(email.lower())
        self._secret.write(CREATED_MEMBERS_KEY, json.dumps(sorted(self.emails)))


def removal_refusal(removing: Iterable[str], members: Iterable[str], approved: Iterable[str]) -> Optional[str]:
    """None when the accounts in `removing` (made by the stack) may go, else the one line that
    stops the run. Removal is final, so more than one at once, or the last ones, must be named
    in removeMembers: an emptied or mistyped list then cannot take the whole team."""
    removing = sorted({email.lower() for email in removing})
    members = list(members)
    confirmed = {email.lower() for email in approved}
    unconfirmed = [email for email in removing if email not in confirmed]
    if not unconfirmed or (len(removing) <= 1 and members):
        return None
    why = "labeling.members is empty" if not members else f"{len(removing)} members leave labeling.members at once"
    return (f"{why}: the accounts the stack created for {', '.join(removing)} would be removed for good; "
            f"to confirm, list {', '.join(unconfirmed)} in labeling.removeMembers")


def removal_warning(removing: Iterable[str]) -> Optional[str]:
    """The plan's line naming the accounts the next run removes."""
    removing = sorted({email.lower() for email in removing})
    if not removing:
        return None
    return (f"labeling.members: the next run removes {', '.join(removing)} from the organization for good "
            "(accounts the stack created; Label Studio cannot add them back)")


def reconcile_members(client: LabelStudioClient, members: tuple[str, ...], passwords: dict[str, str],
                      record: CreatedRecord, sign_up: SignUp, report: Callable[[str], None],
                      approved_removals: tuple[str, ...] = ()) -> MemberCounts:
    """Create missing accounts, remove delisted ones the reconciler created; one line each, then the counts.
    Removals beyond one at a time, or of the last members, need `approved_removals` (removal_refusal)."""
    me = client.get("/api/current-user/whoami")
    # A removed member is listed with the e-mail "Deleted": only current members match an address.
    current = {str(user.get("email", "")).lower(): user for user in client.get_all_pages("/api/users/")}
    wanted = {email.lower() for email in members}
    # Removed before, or the owner the API token belongs to (Label Studio refuses that): nothing to remove.
    removing = [key for key in sorted(record.emails - wanted) if key in current and current[key]["id"] != me["id"]]
    refusal = removal_refusal(removing, members, approved_removals)
    if refusal:
        raise ReconcileError(refusal)
    counts = MemberCounts()
    for email in members:
        key = email.lower()
        label = f'member "{email}"'
        if key in current:
            counts.present += 1
            report(f"{label}: present" if key in record.emails else
                   f"{label}: present, not managed (the account existed before; its password is its owner's, "
                   "not the one in memberPasswords, and the stack never removes it)")
            continue
        if key in record.emails:
            report(f"{label}: {CANNOT_READD}")
            continue
        if key not in passwords:
            raise ReconcileError(f"{label}: no password in the member Secret")
        refused = sign_up(email, passwords[key])
        if refused is None:
            record.add(key)
            counts.created += 1
            report(f"{label}: created (its password is in the member Secret)")
        elif "exists" in refused:
            report(f"{label}: {CANNOT_READD} (sign-up says: {refused})")
        else:
            raise ReconcileError(f"{label}: Label Studio refused the sign-up: {refused}")
    for key in removing:
        user = current[key]
        client.call("DELETE", f"/api/organizations/{me['active_organization']}/memberships/{user['id']}/")
        counts.removed += 1
        report(f'member "{key}": removed from the organization (no access to projects, tasks or annotations)')
    report(f"members: {counts.created} created, {counts.present} present, {counts.removed} removed")
    return counts
