"""Signing in to the queue UI from a browser: a small form that sets the HttpOnly, SameSite=Strict cookie scoped to
the UI's path (the cookie an admin's API login sets too), and signing out, which revokes that token.

A page of the UI asked for without a valid admin cookie is redirected here instead of answering a bare 401. The form
posts only from this origin: a request whose `Origin` or `Sec-Fetch-Site` says another site is refused (a forged
sign-in would otherwise sign a browser in as someone else); the cookie itself never travels cross-site.
"""

from __future__ import annotations

import html
from typing import Any
from urllib.parse import urlsplit

from litestar import Request, Response, get, post
from litestar.di import Provide
from litestar.exceptions import PermissionDeniedException
from litestar.response import Redirect
from litestar.status_codes import HTTP_303_SEE_OTHER

from domain.accounts.controller import provide_user_service
from domain.accounts.revocation import RevocationFeed
from domain.accounts.security import (
    ADMIN_UI_PATH,
    TokenIssuer,
    admin_in_cookie,
    admin_ui_cookie,
    cleared_admin_ui_cookie,
)
from domain.accounts.service import UserService
from domain.accounts.throttle import LoginThrottle, TooManyAttempts
from domain.errors import Unauthorized

SIGN_IN_PATH = f"{ADMIN_UI_PATH}/sign-in"
SIGN_OUT_PATH = f"{ADMIN_UI_PATH}/sign-out"
PAGE_HEADERS = {
    "Content-Security-Policy": "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'; "
    "frame-ancestors 'none'; base-uri 'none'",
    "Cache-Control": "no-store",
}

_PAGE = """<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><meta name="viewport" content="width=device-width, initial-scale=1">
<title>roi · job queues · sign in</title>
<style>
body {{ font: 16px/1.5 system-ui, sans-serif; margin: 0; display: grid; place-items: center; min-height: 100vh;
  background: #f5f6f8; color: #1b1f24; }}
main {{ background: #fff; padding: 2rem; border-radius: 8px; box-shadow: 0 1px 4px #0002; width: min(22rem, 90vw); }}
h1 {{ font-size: 1.25rem; margin: 0 0 1rem; }}
label {{ display: block; margin-top: .75rem; }}
input {{ width: 100%; box-sizing: border-box; padding: .5rem; font: inherit; border: 1px solid #767676;
  border-radius: 4px; }}
button {{ margin-top: 1.25rem; padding: .5rem 1rem; font: inherit; background: #0b5cad; color: #fff; border: 0;
  border-radius: 4px; cursor: pointer; }}
button:focus-visible, input:focus-visible {{ outline: 3px solid #f0a500; outline-offset: 2px; }}
p[role=alert] {{ color: #a4161a; }}
</style></head>
<body><main>
<h1>Job queues</h1>
{body}
</main></body></html>
"""

_FORM = """<p>Sign in with an admin account.</p>
{message}
<form method="post" action="{action}">
<label for="email">Email</label><input id="email" name="email" type="email" autocomplete="username" required
 value="{email}" autofocus>
<label for="password">Password</label><input id="password" name="password" type="password"
 autocomplete="current-password" required>
<button type="submit">Sign in</button>
</form>"""

_SIGNED_IN = """<p>You are signed in to the queue UI.</p>
<p><a href="{root}/">Open the job queues</a></p>
<form method="post" action="{action}"><button type="submit">Sign out</button></form>"""


def sign_in_page(message: str = "", email: str = "", status_code: int = 200) -> Response[str]:
    alert = f'<p role="alert">{html.escape(message)}</p>' if message else ""
    body = _FORM.format(message=alert, action=SIGN_IN_PATH, email=html.escape(email, quote=True))
    return Response(_PAGE.format(body=body), status_code=status_code, media_type="text/html", headers=PAGE_HEADERS)


def is_ui_page(request: Request[Any, Any, Any]) -> bool:
    """A page a person opens (not the UI's JSON API, not its static files): worth a redirect to the form. (Routing
    has taken the trailing slash off the path by now: `/saq/` reads `/saq`.)"""
    path = request.url.path
    return (
        request.method in ("GET", "HEAD")
        and (path == ADMIN_UI_PATH or path.startswith(f"{ADMIN_UI_PATH}/"))
        and not path.startswith((f"{ADMIN_UI_PATH}/api/", f"{ADMIN_UI_PATH}/static/"))
    )


def sign_in_redirect() -> Response[Any]:
    return Redirect(SIGN_IN_PATH, status_code=HTTP_303_SEE_OTHER, headers={"Cache-Control": "no-store"})


def from_this_site(request: Request[Any, Any, Any]) -> bool:
    """Whether a form post came from a page of this origin (browsers send `Origin` and `Sec-Fetch-Site` on every
    POST; a client that sends neither is not a browser, which is all cross-site forgery needs)."""
    fetch_site = request.headers.get("sec-fetch-site")
    if fetch_site is not None and fetch_site not in ("same-origin", "none"):
        return False
    origin = request.headers.get("origin")
    if origin is None:
        return True
    if origin == "null":
        return False
    return urlsplit(origin).netloc == request.headers.get("host", "")


@get(SIGN_IN_PATH, opt={"exclude_from_auth": True}, include_in_schema=False)
async def sign_in_form(request: Request[Any, Any, Any], tokens: TokenIssuer) -> Response[str]:
    """The form; with a valid admin cookie, a way to the queues and to sign out instead (a cookie whose token was
    revoked meanwhile, by a password change say, gets the form: the queues would only send the browser back here)."""
    if await admin_in_cookie(request, tokens.auth):
        body = _SIGNED_IN.format(root=ADMIN_UI_PATH, action=SIGN_OUT_PATH)
        return Response(_PAGE.format(body=body), media_type="text/html", headers=PAGE_HEADERS)
    return sign_in_page()


@post(
    SIGN_IN_PATH,
    opt={"exclude_from_auth": True},
    include_in_schema=False,
    dependencies={"users": Provide(provide_user_service)},
)
async def sign_in(
    request: Request[Any, Any, Any], users: UserService, login_throttle: LoginThrottle, tokens: TokenIssuer
) -> Response[Any]:
    """Checks the credentials as login does (the same throttle); an admin gets the cookie and goes to the queues."""
    if not from_this_site(request):
        raise PermissionDeniedException("sign in from this site's own form")
    form = await request.form()
    email, password = str(form.get("email", "")), str(form.get("password", ""))
    if not email or not password:
        return sign_in_page("Enter an email and a password.", email, 400)
    address = request.client.host if request.client else "unknown"
    try:
        await login_throttle.check(email, address)
    except TooManyAttempts as refused:
        return sign_in_page(refused.detail, email, 429)
    try:
        user = await users.authenticate(email, password)
    except Unauthorized:
        await login_throttle.failed(email, address)
        return sign_in_page("Wrong email or password.", email, 401)
    await login_throttle.succeeded(email)
    if not user.is_admin:
        return sign_in_page("This account is not an admin: the job queues are for admins only.", email, 403)
    token = tokens.issue(user.id, user.is_admin, user.token_generation)
    cookie = admin_ui_cookie(request, token, tokens.lifetime_s)
    return Redirect(f"{ADMIN_UI_PATH}/", status_code=HTTP_303_SEE_OTHER, cookies=[cookie])


@post(SIGN_OUT_PATH, opt={"exclude_from_auth": True}, include_in_schema=False)
async def sign_out(request: Request[Any, Any, Any], tokens: TokenIssuer, revocations: RevocationFeed) -> Response[Any]:
    """Revokes the cookie's token (everywhere, like logout) while it is still valid, and clears the cookie either way:
    a browser holding a revoked or expired cookie can always sign out and in again."""
    if not from_this_site(request):
        raise PermissionDeniedException("sign out from this site's own form")
    signed_in = await admin_in_cookie(request, tokens.auth)
    if signed_in is not None and signed_in[0].token_id is not None:
        await revocations.revoke_token(*signed_in)
    return Redirect(SIGN_IN_PATH, status_code=HTTP_303_SEE_OTHER, cookies=[cleared_admin_ui_cookie(request)])


QUEUE_UI_SIGN_IN_HANDLERS = [sign_in_form, sign_in, sign_out]
