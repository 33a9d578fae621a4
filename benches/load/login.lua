-- Phase (a): the login flood. Every request is a correct POST /login, so
-- gatehouse runs a full argon2id verification (and mints tokens) each time.
wrk.method = "POST"
wrk.path = "/login"
wrk.headers["Content-Type"] = "application/json"
wrk.body = '{"username":"bench","password":"' .. os.getenv("BENCH_PASSWORD") .. '"}'
dofile(os.getenv("LOAD_DIR") .. "/report.lua")
