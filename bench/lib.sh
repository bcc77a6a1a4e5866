# Shared by the bench/ scripts (sourced, not run): ports, an RS256 token and
# its JWKS, a signed-in browser session, and wrk measurement. The caller sets
# THREADS, CONNECTIONS, DURATION and `declare -A RPS P50 P99` (for measure).

# The build measured: the shipped profile (Cargo.toml `dist`) unless
# PROFILE=release asks for the tests' build, e.g. to measure what LTO is worth.
PROFILE=${PROFILE:-dist}
BIN=target/$PROFILE
# bench_build ARGS: cargo build of ARGS in that profile, quiet unless it fails.
bench_build() {
  cargo build --profile "$PROFILE" -p omnigate "$@" >/dev/null 2>&1 ||
    cargo build --profile "$PROFILE" -p omnigate "$@"
}

port() { python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1]); s.close()'; }

# An RSA key in $1, its JWKS at $1/www/jwks.json and one RS256 token
# (iss http://bench.issuer, aud bench-api, scope orders:read) in $1/token.
bench_token() {
  local work=$1
  openssl genrsa -out "$work/jwt.key" 2048 2>/dev/null
  openssl rsa -in "$work/jwt.key" -pubout -out "$work/jwt.pub" 2>/dev/null
  mkdir -p "$work/www"
  python3 - "$work" <<'PY'
import base64, json, subprocess, sys, time
work = sys.argv[1]
b64 = lambda b: base64.urlsafe_b64encode(b).rstrip(b"=").decode()
mod = subprocess.run(["openssl", "rsa", "-pubin", "-in", f"{work}/jwt.pub", "-noout", "-modulus"],
                     capture_output=True, text=True, check=True).stdout.strip().split("=", 1)[1]
n = bytes.fromhex(mod)
jwk = {"kty": "RSA", "kid": "bench", "alg": "RS256", "use": "sig", "n": b64(n), "e": b64((65537).to_bytes(3, "big"))}
open(f"{work}/www/jwks.json", "w").write(json.dumps({"keys": [jwk]}))
header = b64(json.dumps({"alg": "RS256", "kid": "bench", "typ": "JWT"}).encode())
now = int(time.time())
claims = {"iss": "http://bench.issuer", "aud": "bench-api", "sub": "bench-user", "iat": now,
          "exp": now + 3600, "scope": "orders:read", "email": "bench@example.test"}
payload = b64(json.dumps(claims).encode())
sig = subprocess.run(["openssl", "dgst", "-sha256", "-sign", f"{work}/jwt.key"],
                     input=f"{header}.{payload}".encode(), capture_output=True, check=True).stdout
open(f"{work}/token", "w").write(f"{header}.{payload}.{b64(sig)}")
PY
  # nginx workers run unprivileged: let them read the JWKS.
  chmod 755 "$work" "$work/www"; chmod 644 "$work/www/jwks.json"
}

# A signed-in browser: one session row in each embedded store given, keyed
# by the SHA-256 of the cookie value, the way a sign-in leaves it. Prints
# the cookie value.
bench_session() {
  python3 - "$@" <<'PY'
import base64, hashlib, os, sqlite3, sys, time
sid = base64.urlsafe_b64encode(os.urandom(32)).rstrip(b"=").decode()
now = int(time.time())
for path in sys.argv[1:]:
    db = sqlite3.connect(path, timeout=10)
    db.execute("INSERT INTO sessions (id_hash, customer_id, email, email_verified, name, provider, csrf,"
               " created_at, last_seen, expires_at, login_id, provider_sid, consents)"
               " VALUES (?, 'cus_bench', 'bench@example.test', 1, 'Bench', 'bench', 'x', ?, ?, ?, 'bench', NULL,"
               " '{\"partner_sharing\": 1}')",
               (hashlib.sha256(sid.encode()).hexdigest(), now, now, now + 3600))
    db.commit()
print(sid)
PY
}

# Waits for an Omnigate admin listener's /readyz.
bench_ready() {
  for _ in $(seq 1 100); do
    curl -fs "http://127.0.0.1:$1/readyz" >/dev/null 2>&1 && return 0
    sleep 0.1
  done
  echo "Omnigate (admin port $1) did not become ready" >&2
  return 1
}

# wrk prints latency with units; normalize to milliseconds.
to_ms() { awk '{v=$1; if (v ~ /us$/) {sub(/us$/,"",v); v=v/1000} else if (v ~ /ms$/) {sub(/ms$/,"",v)} else if (v ~ /s$/) {sub(/s$/,"",v); v=v*1000}; printf "%.3f", v}'; }

# measure NAME PORT [PATH] [HEADER]: a warm-up, then DURATION of load; any
# non-2xx answer fails the run.
measure() {
  local name=$1 port=$2 path=${3:-/} auth=()
  [ -n "${4:-}" ] && auth=(-H "$4")
  wrk -t"$THREADS" -c"$CONNECTIONS" -d2s "${auth[@]}" "http://127.0.0.1:$port$path" >/dev/null 2>&1 # warm-up
  local out
  out=$(wrk -t"$THREADS" -c"$CONNECTIONS" -d"$DURATION" --latency "${auth[@]}" "http://127.0.0.1:$port$path")
  if echo "$out" | grep -q "Non-2xx"; then echo "$name answered errors:" >&2; echo "$out" >&2; exit 1; fi
  RPS[$name]=$(echo "$out" | awk '/^Requests\/sec/ {print $2}')
  P50[$name]=$(echo "$out" | awk '$1=="50%" {print $2}' | to_ms)
  P99[$name]=$(echo "$out" | awk '$1=="99%" {print $2}' | to_ms)
}

# Stops the given processes and waits until they are gone: TERM (Omnigate
# finishes in-flight requests within its shutdown_grace), KILL after 15 s.
bench_stop() {
  local p alive
  for p in "$@"; do kill "$p" 2>/dev/null || true; done
  for _ in $(seq 1 150); do
    alive=0
    for p in "$@"; do kill -0 "$p" 2>/dev/null && alive=1; done
    [ "$alive" = 0 ] && return 0
    sleep 0.1
  done
  for p in "$@"; do { kill -9 "$p" && wait "$p"; } 2>/dev/null || true; done
}
