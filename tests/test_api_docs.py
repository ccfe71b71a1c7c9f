"""The OpenAPI document as served at /openapi.json: every route of the app and nothing else, each
operation with an operationId, tags and examples that match its schemas, the error answers shared
and naming every code, and the two linters the docs promise (`redocly lint` from npm and
openapi-spec-validator) passing on it. The /docs page's own headers; its rendering in Chromium is
tests/test_api_docs_e2e.py."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator, Iterator
from pathlib import Path
from typing import Any

import httpx
import jsonschema
import pytest
from conftest import make_settings, repo_root
from delivery_fixtures import serving
from openapi_spec_validator import validate
from starlette.routing import Mount, Route

from otp import errors
from otp.app import create_app
from otp.edge.embedded_redis import free_port
from otp.web import docs, models, openapi, openapi_errors
from otp.web.verify_v2 import errors as twilio
from otp.web.verify_v2 import openapi as v2

NODE_TOOLS = repo_root() / "tests" / "node_tools"
METHODS = ("get", "put", "post", "delete", "patch")
# Operations that answer no 4xx (the redocly rule operation-4xx-response is off for them alone).
NO_4XX = {"getHealth", "getReadiness", "getOpenApi", "getDocs", "getJwks"}
NETWORK_ERRORS = ("ENOTFOUND", "EAI_AGAIN", "ECONNREFUSED", "ECONNRESET", "ETIMEDOUT", "ENETUNREACH")


@pytest.fixture
async def served(redis_url: str) -> AsyncIterator[tuple[str, dict[str, Any]]]:
    """The app under uvicorn; its base URL and the document it serves."""
    port = free_port()
    base = f"http://127.0.0.1:{port}"
    async with serving(create_app(make_settings(redis_url)), port), httpx.AsyncClient(base_url=base) as http:
        answer = await http.get("/openapi.json")
        assert answer.status_code == 200 and answer.headers["content-type"] == "application/json"
        yield base, answer.json()


@pytest.fixture(scope="module")
def document() -> dict[str, Any]:
    found: dict[str, Any] = json.loads(openapi.encoded())
    return found


def operations(document: dict[str, Any]) -> Iterator[tuple[str, str, dict[str, Any]]]:
    for path, item in document["paths"].items():
        for method in METHODS:
            if method in item:
                yield method, path, item[method]


def resolve(document: dict[str, Any], node: dict[str, Any]) -> dict[str, Any]:
    while "$ref" in node:
        _, section, name = node["$ref"].removeprefix("#/").split("/")
        node = document["components"][section][name]
    return node


def test_every_operation_has_a_unique_operation_id_a_declared_tag_and_a_summary(document: dict[str, Any]) -> None:
    ids = [op["operationId"] for _, _, op in operations(document)]
    assert len(ids) == len(set(ids)) and all(ids)
    declared = {tag["name"] for tag in document["tags"]}
    grouped = [tag for group in document["x-tagGroups"] for tag in group["tags"]]
    assert sorted(grouped) == sorted(declared)
    for method, path, op in operations(document):
        assert op["summary"] and len(op["tags"]) == 1 and op["tags"][0] in declared, (method, path)
        assert "security" in op, (method, path)


def _app_routes() -> set[tuple[str, str]]:
    app = create_app(make_settings("redis://127.0.0.1:1"))
    found = set()
    for route in app.routes:
        if isinstance(route, Mount) or not isinstance(route, Route) or "{rest:path}" in route.path:
            continue  # the dashboard and the docs' bundle are files and pages, /v2's catch-all a 404
        path = route.path.replace(":ve}", "}")
        found |= {(m.lower(), path) for m in route.methods or () if m != "HEAD"}
    return found - {("get", "/admin")}  # the dashboard's redirect to /admin/


def test_the_document_describes_every_route_of_the_app_and_no_other(document: dict[str, Any]) -> None:
    documented = {(method, path) for method, path, _ in operations(document)}
    assert documented == _app_routes()


def test_every_json_body_and_answer_has_an_example_that_its_schema_accepts(document: dict[str, Any]) -> None:
    checked = 0
    for method, path, op in operations(document):
        media = [resolve(document, op["requestBody"])["content"]] if "requestBody" in op else []
        media += [resolve(document, r).get("content", {}) for r in op["responses"].values()]
        for content in media:
            for kind, entry in content.items():
                assert entry.get("examples"), (method, path, kind)
                validator = jsonschema.Draft202012Validator({**entry["schema"], "components": document["components"]})
                for name, example in entry["examples"].items():
                    value = example["value"]
                    if kind == "application/json":
                        problems = [e.message for e in validator.iter_errors(value)]
                        assert not problems, (method, path, name, problems[:3])
                    checked += 1
    assert checked > 200


def test_every_operation_but_the_probes_and_the_docs_lists_its_4xx_answers(document: dict[str, Any]) -> None:
    for method, path, op in operations(document):
        errors_listed = [s for s in op["responses"] if s.startswith("4")]
        assert bool(errors_listed) == (op["operationId"] not in NO_4XX), (method, path)
        for status in errors_listed:
            ref = op["responses"][status].get("$ref", "")
            assert ref.startswith("#/components/responses/"), (method, path, status)


def test_the_v1_error_schema_names_every_code_with_its_status(document: dict[str, Any]) -> None:
    code = document["components"]["schemas"]["ErrorDetail"]["properties"]["code"]
    assert code["enum"] == list(models.V1_CODES)
    for name in models.V1_CODES:
        assert f"| `{name}` | {errors.CODES[name].status} |" in code["description"]
    # Each status's shared answer names the codes of that status, with an example of each.
    answers = document["components"]["responses"]
    for status in {errors.CODES[name].status for name in models.V1_CODES} & set(openapi_errors.REASONS):
        if openapi_errors.v1_name(status) not in answers:
            continue  # no operation answers it (405: the paths that exist list their methods)
        answer = answers[openapi_errors.v1_name(status)]
        expected = {name for name in models.V1_CODES if errors.CODES[name].status == status}
        assert set(answer["content"]["application/json"]["examples"]) == expected, status
    assert {"token_invalid", "custom_limit"}.isdisjoint(models.V1_CODES)  # a 200's reason; /v2 only


def test_the_v2_error_schema_names_every_twilio_code_otp_answers(document: dict[str, Any]) -> None:
    code = document["components"]["schemas"]["TwilioError"]["properties"]["code"]
    answered = {e.code for e in (*twilio.BY_CODE.values(), *twilio.BY_STATUS.values(), twilio.INTERNAL)}
    assert set(code["enum"]) == answered
    for name, error in twilio.BY_CODE.items():
        assert f"| {error.code} | {error.status} |" in code["description"] and f"`{name}`" in code["description"]


def test_the_v2_operations_are_twilios_with_basic_auth_and_twilio_errors(document: dict[str, Any]) -> None:
    for method, path in v2.served():
        op = document["paths"][path][method]
        assert op["security"] == [{"basic": []}]
        assert op["responses"]["401"] == openapi_errors.ref(openapi_errors.v2_name(401))
    create = document["paths"]["/v2/Services/{ServiceSid}/Verifications"]["post"]
    assert create["operationId"] == "CreateVerification"
    form = create["requestBody"]["content"]["application/x-www-form-urlencoded"]
    assert {"To", "Channel", "CustomCode"} <= set(form["schema"]["properties"])
    assert "CustomMessage" in create["description"]  # what otp refuses that Twilio takes


def test_the_twilio_subset_is_what_the_script_makes_of_todays_route_table() -> None:
    script = repo_root() / "scripts" / "twilio-openapi-subset"
    result = subprocess.run([sys.executable, str(script), "--check"], capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr


async def test_openapi_spec_validator_accepts_the_served_document(served: tuple[str, dict[str, Any]]) -> None:
    _, found = served
    validate(found)
    assert found == json.loads(openapi.encoded())


@pytest.fixture(scope="module")
def redocly(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """@redocly/cli at the version tests/node_tools/package-lock.json pins, installed with npm ci."""
    if shutil.which("node") is None or shutil.which("npm") is None:
        pytest.skip("node and npm are needed for redocly lint (apt-get install nodejs npm)")
    folder = tmp_path_factory.mktemp("node_tools")
    for name in ("package.json", "package-lock.json"):
        shutil.copy(NODE_TOOLS / name, folder / name)
    try:
        result = subprocess.run(
            ["npm", "ci", "--no-audit", "--no-fund", "--loglevel=error"],
            cwd=folder,
            capture_output=True,
            text=True,
            timeout=90,
        )
    except subprocess.TimeoutExpired:
        pytest.skip("npm ci took over 90 s (is the npm registry reachable?)")
    output = result.stdout + result.stderr
    if result.returncode != 0 and any(code in output for code in NETWORK_ERRORS):
        pytest.skip(f"the npm registry is unreachable: {output.strip().splitlines()[-1]}")
    assert result.returncode == 0, output
    return folder / "node_modules" / "@redocly" / "cli" / "bin" / "cli.js"


async def test_redocly_lint_finds_no_problem_in_the_served_document(
    served: tuple[str, dict[str, Any]], redocly: Path, tmp_path: Path
) -> None:
    _, found = served
    target = tmp_path / "openapi.json"
    target.write_text(json.dumps(found))
    # No telemetry, no update check: the lint talks to nobody.
    env = {**os.environ, "REDOCLY_TELEMETRY": "off", "REDOCLY_SUPPRESS_UPDATE_NOTICE": "true", "NO_COLOR": "1"}
    config = NODE_TOOLS / "redocly.yaml"
    result = subprocess.run(
        ["node", str(redocly), "lint", str(target), "--config", str(config), "--format=json"],
        capture_output=True,
        text=True,
        timeout=60,
        env=env,
    )
    report = json.loads(result.stdout)
    problems = [
        f"{p['severity']} {p['ruleId']}: {p['message']} at {p['location'][0]['pointer']}" for p in report["problems"]
    ]
    assert not problems and result.returncode == 0, problems[:10] or result.stderr


async def test_the_docs_page_and_its_bundle_carry_their_own_policy(served: tuple[str, dict[str, Any]]) -> None:
    base, _ = served
    async with httpx.AsyncClient(base_url=base) as http:
        page = await http.get(docs.PATH)
        bundle = await http.get(f"{docs.PATH}/static/redoc.standalone.js")
        again = await http.get(
            f"{docs.PATH}/static/redoc.standalone.js", headers={"If-None-Match": bundle.headers["etag"]}
        )
        missing = await http.get(f"{docs.PATH}/static/nothing.js")
    assert page.status_code == 200 and '<redoc spec-url="openapi.json"' in page.text
    for answer in (page, bundle):
        assert answer.headers["content-security-policy"] == docs.CONTENT_SECURITY_POLICY
        assert answer.headers["x-content-type-options"] == "nosniff"
    policy = dict(part.split(" ", 1) for part in docs.CONTENT_SECURITY_POLICY.split("; "))
    assert policy["default-src"] == "'none'" and policy["script-src"] == "'self'"
    assert policy["connect-src"] == "'self'" and "font-src" not in policy  # no web fonts at all
    assert bundle.status_code == 200 and "javascript" in bundle.headers["content-type"]
    assert again.status_code == 304 and missing.status_code == 404
    assert b"cdn.redoc.ly" not in bundle.content  # scripts/vendor-redoc drew the logo inline


def test_the_package_carries_the_bundle_and_the_v2_description() -> None:
    from importlib import resources

    assert (resources.files("otp.web") / "static" / "redoc.standalone.js").is_file()
    assert v2.SUBSET.is_file()
    pyproject = (repo_root() / "pyproject.toml").read_text()
    assert '"otp.web" = ["static/*"]' in pyproject and '"otp.web.verify_v2" = ["twilio_openapi.json"]' in pyproject
