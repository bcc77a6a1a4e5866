-- wrk: one password sign-in per request, with the double-submit CSRF cookie
-- and token bench/spike fetched once (env SIGNIN_COOKIE, SIGNIN_BODY).
wrk.method = "POST"
wrk.body = os.getenv("SIGNIN_BODY")
wrk.headers["Content-Type"] = "application/x-www-form-urlencoded"
wrk.headers["Cookie"] = os.getenv("SIGNIN_COOKIE")
wrk.headers["Origin"] = os.getenv("SIGNIN_ORIGIN")
wrk.headers["Host"] = os.getenv("SIGNIN_HOST")
