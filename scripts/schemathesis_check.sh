#!/usr/bin/env bash
# Fuzz the API against its own OpenAPI document with the schemathesis CLI (issue 8).
#
# Schemathesis lives in its own venv (var/schemathesis-venv) so its pytest plugin never loads
# into the test suite. A throwaway SQLite database (var/schemathesis/) gets an operator, an
# operator API key, a service key and two registry entries; the admin starts on a free port;
# `st run` then checks every operation three times: as the operator, as the service key and
# with no credentials. Any server error or schema violation fails the script.
#
#   ST_MAX_EXAMPLES  examples per operation and phase (default 8; the script takes ~60 s)
#   ST_SEED          hypothesis seed (default fixed, so a failure reproduces)
set -euo pipefail
cd "$(dirname "$0")/.."

SCHEMATHESIS_VERSION=4.32.5
VENV=var/schemathesis-venv
WORK=var/schemathesis
PY=.venv/bin/python
MAX_EXAMPLES=${ST_MAX_EXAMPLES:-8}
SEED=${ST_SEED:-20240801}

if [ "$("$VENV/bin/st" --version 2>/dev/null)" != "st, version $SCHEMATHESIS_VERSION" ]; then
  python3 -m venv "$VENV"
  "$VENV/bin/pip" install -q --disable-pip-version-check "schemathesis==$SCHEMATHESIS_VERSION"
fi

rm -rf "$WORK"
mkdir -p "$WORK"
# Development settings (throttles off), on a database of its own. Endpoint host names are not
# resolved: generated URLs would otherwise wait on DNS.
export DATABASE_URL="sqlite:///$PWD/$WORK/db.sqlite3"
export ATHENA_DEBUG=true ATHENA_RESOLVE_BACKEND_HOSTS=false ATHENA_LOG_LEVEL=WARNING
# Schemathesis sends hundreds of wrong credentials on purpose and expects 401/403 for each;
# the password-guessing limits (429 past them, tests/identity/test_basic_auth_guessing.py)
# would answer most of them instead.
export ATHENA_LOGIN_RATE=100000/minute ATHENA_LOGIN_ADDRESS_RATE=100000/minute
unset ATHENA_CACHE_URL

"$PY" manage.py migrate --noinput >/dev/null
"$PY" manage.py shell -c '
from django.contrib.auth import get_user_model
from backends.services import backend_create
get_user_model().objects.create_superuser("operator", "", None)
common = {"backend_type": "ollama", "endpoint_url": "http://127.0.0.1:11434"}
backend_create(fields={"model_name": "fallback", **common})
backend_create(fields={"model_name": "phi3:mini", **common}, fallbacks=["fallback"])
'
OPERATOR_KEY=$("$PY" manage.py create_service_key schemathesis-operator --user operator 2>/dev/null)
SERVICE_KEY=$("$PY" manage.py create_service_key schemathesis-service 2>/dev/null)

PORT=$("$PY" -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
BASE="http://127.0.0.1:$PORT"
"$PY" manage.py runserver --noreload --nothreading "127.0.0.1:$PORT" >"$WORK/server.log" 2>&1 &
SERVER=$!
trap 'kill "$SERVER" 2>/dev/null || true; wait "$SERVER" 2>/dev/null || true' EXIT
for _ in $(seq 50); do
  curl -sf "$BASE/health" >/dev/null && break
  kill -0 "$SERVER" 2>/dev/null || { cat "$WORK/server.log"; exit 1; }
  sleep 0.2
done

# The schema is not public: fetch it once with the operator's key.
curl -sf -H "Authorization: Bearer $OPERATOR_KEY" -H "Accept: application/vnd.oai.openapi+json" \
  "$BASE/api/schema" >"$WORK/openapi.json"

# One config per run binds the credential to its securityScheme, so the auth checks
# (ignored_auth) know which credential to corrupt or drop. A schema-valid registry write may
# still be refused with 400 by rules a JSON schema cannot state (model names are unique, a
# comparison needs a configured model and waits for the one in progress (409),
# fallbacks must name existing entries, endpoints must sit in the allowed networks, a
# sample's started_at must be representable: 0001-01-01T01:00+05:06 is before year 1 in UTC).
# negative_data_rejection is on: the API refuses a JSON value of the wrong type instead of
# letting DRF coerce it (backends/api/serializers.py, StrictJSONTypes).
st() {
  local name=$1 auth=$2
  shift 2
  cat >"$WORK/$name.toml" <<EOF
$auth

[cache]
enabled = false

[[operations]]
include-operation-id-regex = "^(llm_backends_(create|update|partial_update)|comparisons_create)$"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404", "409"]

# A batch keeps its good samples: a bad one is dropped and reported in a 202 (issue 14 item 9),
# so a batch with an invalid sample is accepted on purpose. A body that is not a batch is still
# a 400 (tests/backends/test_sample_ingest.py covers both).
[[operations]]
include-operation-id = "metrics_samples_create"
checks.positive_data_acceptance.expected-statuses = ["2xx", "400", "401", "403", "404"]
checks.negative_data_rejection.expected-statuses = ["202", "400", "401", "403", "404", "405", "406", "415", "422"]
EOF
  echo "== schemathesis: $name"
  "$VENV/bin/st" --config-file "$WORK/$name.toml" run "$WORK/openapi.json" --url "$BASE" \
    --checks all --max-examples "$MAX_EXAMPLES" --seed "$SEED" --workers 1 --no-shrink \
    --request-timeout 10 --warnings off \
    --report junit --report-junit-path "$WORK/$name.xml" "$@"
}

failed=0
st operator "$(printf '[auth.openapi.apiKeyBearer]\nbearer = "%s"' "$OPERATOR_KEY")" || failed=1
st service "$(printf '[auth.openapi.apiKeyHeader]\napi_key = "%s"' "$SERVICE_KEY")" || failed=1
# No credentials: every operation must answer its documented 401.
st anonymous "" --phases examples,coverage,fuzzing || failed=1

if [ "$failed" -ne 0 ]; then
  echo "schemathesis found failures; server log: $WORK/server.log" >&2
  exit 1
fi
echo "schemathesis: no server errors, no schema violations"
