"""Issue #13, proof: schemathesis over every operation with a customer's, a technician's, an
admin's and an auditor's token and real ids: no server error, every response as documented
(status, content type, schema; client errors as application/problem+json)."""

import json
import os
import subprocess
import sys
from pathlib import Path

import httpx
import pytest
from sqlalchemy import text

ROOT = Path(__file__).resolve().parents[2]
EXAMPLES_PER_OPERATION = 5
CHECKS = "not_a_server_error,status_code_conformance,content_type_conformance,response_schema_conformance"
# Ending the caller's own session or disabling accounts would turn the rest of the run into 401s.
EXCLUDED_PATHS = r"/v1/auth/(logout|refresh)|/disable|/v1/ws/"
ID_QUERIES = {
    "order_id": "SELECT id FROM dispatch_order",
    "technician_id": "SELECT id FROM dispatch_technician",
    "station_id": "SELECT id FROM dispatch_service_station",
    "address_id": "SELECT id FROM dispatch_address",
    "customer_id": "SELECT id FROM dispatch_customer",
    "account_id": "SELECT id FROM dispatch_account",
    "certification_id": "SELECT id FROM dispatch_certification",
    "settlement_id": "SELECT id FROM settlement_settlement",
    "offer_id": "SELECT id FROM matching_offer",
    "review_id": "SELECT id FROM ratings_review",
    "notification_id": "SELECT id FROM dispatch_notification",
    "device_id": "SELECT id FROM meters_device",
}


@pytest.fixture
async def seeded_city(committed_sessions) -> dict[str, list[str]]:  # noqa: ANN001
    seeded = subprocess.run([sys.executable, "-m", "app", "seed", "--city", "demo"], cwd=ROOT,
                            capture_output=True, text=True, timeout=300)
    assert seeded.returncode == 0, seeded.stderr
    ids: dict[str, list[str]] = {}
    async with committed_sessions() as session:
        for name, query in ID_QUERIES.items():
            rows = (await session.execute(text(f"{query} ORDER BY id LIMIT 20"))).scalars().all()
            ids[name] = [str(row) for row in rows]
    return ids


def _failures(report: Path) -> list[str]:
    """One line per failed check in a schemathesis NDJSON report: operation, title, message."""
    found = []

    def walk(node: object) -> None:
        if isinstance(node, dict):
            failure = node.get("failure")
            if isinstance(failure, dict) and "operation" in failure:
                message = " ".join(str(failure.get("message", "")).split())[:200]
                found.append(f"{failure['operation']}: {failure.get('title')} {message}")
            for value in node.values():
                walk(value)
        elif isinstance(node, list):
            for value in node:
                walk(value)

    for line in report.read_text().splitlines():
        walk(json.loads(line))
    return sorted(set(found))


def _login(base: str, email: str) -> str:
    response = httpx.post(f"{base}/v1/auth/login", json={"email": email, "password": "demo-password"}, timeout=30)
    assert response.status_code == 200, response.text
    return response.json()["access_token"]


def test_every_operation_answers_as_documented_for_every_role(
    seeded_city: dict[str, list[str]], api_worker, tmp_path: Path,  # noqa: ANN001
) -> None:
    # No worker runs here, so jobs wait and readiness would rightly say 503: relax it to fuzz the API.
    base = api_worker(GASDISPATCH_HEALTH_MIN_WORKERS="0", GASDISPATCH_HEALTH_MAX_READY_AGE_S="86400")
    with httpx.Client(base_url=base, timeout=30) as client:
        token = _login(base, "customer1@demo.gasdispatch.local")
        addresses = client.get("/v1/customers/me/addresses", headers={"Authorization": f"Bearer {token}"}).json()
        address_id = addresses["data"][0]["id"] if isinstance(addresses, dict) else addresses[0]["id"]
        created = client.post("/v1/orders", headers={"Authorization": f"Bearer {token}"},
                              json={"kind": "repair", "address_id": address_id})
        assert created.status_code in (200, 201), created.text
        seeded_city["order_id"].append(created.json()["id"])

    environment = {**os.environ, "GASDISPATCH_FUZZ_IDS": json.dumps(seeded_city),
                   "SCHEMATHESIS_HOOKS": "tests.security.fuzz.hooks", "PYTHONPATH": str(ROOT)}
    failures = []
    for email in ("customer1@demo.gasdispatch.local", "tech1@demo.gasdispatch.local",
                  "admin@demo.gasdispatch.local", "auditor@demo.gasdispatch.local"):
        role = email.split("@")[0]
        run = subprocess.run(
            [sys.executable, "-m", "schemathesis.cli", "run", f"{base}/openapi.json", "--checks", CHECKS,
             "--header", f"Authorization: Bearer {_login(base, email)}", "--max-examples", str(EXAMPLES_PER_OPERATION),
             "--phases", "examples,fuzzing", "--exclude-path-regex", EXCLUDED_PATHS, "--seed", "13",
             "--generation-database", "none", "--workers", "2", "--no-color", "--suppress-health-check", "all",
             "--report", "ndjson", "--report-ndjson-path", str(tmp_path / f"{role}.ndjson")],
            cwd=tmp_path, env=environment, capture_output=True, text=True, timeout=600)
        if run.returncode != 0:
            report = tmp_path / f"{role}.ndjson"
            found = _failures(report) if report.exists() else []
            failures.append(f"--- {role} ---\n" + ("\n".join(found) or run.stdout[-3000:] + run.stderr[-2000:]))
    assert not failures, "\n".join(failures)
