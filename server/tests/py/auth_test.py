"""Auth with the official Python client (`supabase`, which wraps supabase_auth) against a live doska:
sign-up, sign-in, get_user, refresh, a wrong password's error code, sign-out.
Reads DOSKA_URL and DOSKA_ANON_KEY; exits non-zero on the first failure (the Rust test auth_py.rs
runs it against an in-process doska)."""

import base64
import json
import os
import sys
import uuid

from supabase import create_client
from supabase_auth.errors import AuthApiError


def claims(jwt: str) -> dict:
    payload = jwt.split(".")[1]
    return json.loads(base64.urlsafe_b64decode(payload + "=" * (-len(payload) % 4)))


def main() -> None:
    url, key = os.environ["DOSKA_URL"], os.environ["DOSKA_ANON_KEY"]
    email = f"py-{uuid.uuid4().hex[:8]}@school.test"

    sb = create_client(url, key)
    res = sb.auth.sign_up({"email": email, "password": "py-pass-123", "options": {"data": {"lang": "py"}}})
    assert res.session is not None, "autoconfirm gives a session"
    assert res.user.email == email
    assert res.user.user_metadata["lang"] == "py"
    assert claims(res.session.access_token)["role"] == "authenticated"

    sb2 = create_client(url, key)
    res = sb2.auth.sign_in_with_password({"email": email, "password": "py-pass-123"})
    assert res.session.user.id == res.user.id
    got = sb2.auth.get_user()
    assert got.user.email == email
    old = res.session.refresh_token
    ref = sb2.auth.refresh_session()
    assert ref.session.refresh_token != old

    try:
        create_client(url, key).auth.sign_in_with_password({"email": email, "password": "wrong-pass"})
        raise AssertionError("a wrong password must fail")
    except AuthApiError as e:
        assert e.code == "invalid_credentials", e.code
        assert e.status == 400, e.status

    sb2.auth.sign_out()
    assert sb2.auth.get_session() is None
    print("python supabase auth: ok")


if __name__ == "__main__":
    try:
        main()
    except AssertionError as e:
        print(f"FAILED: {e!r}", file=sys.stderr)
        raise
