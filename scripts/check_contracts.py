#!/usr/bin/env python3
"""Checks contracts/ against itself and against real validators.

- every schema file is valid JSON Schema draft 2020-12;
- every $ref in the schemas, asyncapi.yaml and openapi.yaml resolves (files and JSON pointers);
- every valid example validates against its schema (format checking on), every schema but the shared
  building blocks has one, and every invalid example fails with the field and rule index.json names;
- the error codes agree: error-codes.json, error.json's enum, the OpenAPI error responses;
- openapi.yaml passes openapi-spec-validator (OpenAPI 3.1);
- asyncapi.yaml passes the asyncapi3 package's AsyncAPI 3.0 object model (pydantic: fields, types,
  enums, bindings) plus the structural checks below (references, channels, operations, AMQP bindings),
  as no validator of the official AsyncAPI 3.0 JSON Schema is installable from PyPI.

With --validate DIR, instead validates DIR/<schema>/*.json against the schemas (used by the Swift tests
to check what the Swift types encode).
"""
import json
import pathlib
import sys
import warnings

import yaml
from jsonschema import Draft202012Validator, FormatChecker
from referencing import Registry, Resource
from referencing.jsonschema import DRAFT202012

ROOT = pathlib.Path(__file__).resolve().parent.parent / "contracts"
SCHEMAS = ROOT / "schemas"
EXAMPLES = ROOT / "examples"
# Building blocks that no message is on its own.
NO_EXAMPLE_NEEDED = {"common"}

failures: list[str] = []


def fail(message: str) -> None:
    failures.append(message)


def load_schemas() -> dict[str, dict]:
    return {p.stem: json.loads(p.read_text()) for p in sorted(SCHEMAS.glob("*.json"))}


def registry_for(schemas: dict[str, dict]) -> Registry:
    resources = [(SCHEMAS.joinpath(f"{name}.json").as_uri(), Resource.from_contents(s, default_specification=DRAFT202012))
                 for name, s in schemas.items()]
    return Registry().with_resources(resources)


def validator_for(name: str, registry: Registry) -> Draft202012Validator:
    return Draft202012Validator({"$ref": SCHEMAS.joinpath(f"{name}.json").as_uri()}, registry=registry,
                                format_checker=FormatChecker())


def field_name(path) -> str:
    out = ""
    for part in path:
        out += f"[{part}]" if isinstance(part, int) else (f".{part}" if out else str(part))
    return out or "$"


def problems_of(validator: Draft202012Validator, instance) -> set[tuple[str, str]]:
    """(field, rule) pairs, named the way the Swift validation names them."""
    found = set()
    stack = list(validator.iter_errors(instance))
    while stack:
        error = stack.pop()
        stack.extend(error.context or [])
        path = list(error.absolute_path)
        if error.validator == "required":
            for prop in error.validator_value:
                if isinstance(error.instance, dict) and prop not in error.instance:
                    found.add((field_name(path + [prop]), "required"))
        elif error.validator == "additionalProperties":
            known = error.schema.get("properties", {})
            for prop in error.instance:
                if prop not in known:
                    found.add((field_name(path + [prop]), "additionalProperties"))
        else:
            found.add((field_name(path), str(error.validator)))
    return found


# MARK: $ref resolution over JSON and YAML documents

def load_document(path: pathlib.Path):
    text = path.read_text()
    return yaml.safe_load(text) if path.suffix in (".yaml", ".yml") else json.loads(text)


def resolve_pointer(document, pointer: str):
    node = document
    if pointer in ("", "/"):
        return node
    for raw in pointer.lstrip("/").split("/"):
        token = raw.replace("~1", "/").replace("~0", "~")
        if isinstance(node, list):
            node = node[int(token)]
        else:
            node = node[token]
    return node


def check_refs(path: pathlib.Path, seen: set) -> None:
    document = load_document(path)

    def walk(node, where):
        if isinstance(node, dict):
            ref = node.get("$ref")
            if isinstance(ref, str):
                target_file, _, pointer = ref.partition("#")
                target_path = (path.parent / target_file).resolve() if target_file else path
                if not target_path.is_file():
                    fail(f"{path.name}: {where}: $ref {ref!r}: no file {target_path}")
                else:
                    try:
                        resolve_pointer(load_document(target_path) if target_file else document, pointer)
                    except (KeyError, IndexError, ValueError, TypeError):
                        fail(f"{path.name}: {where}: $ref {ref!r} does not resolve")
                    if target_file and target_path not in seen:
                        seen.add(target_path)
                        check_refs(target_path, seen)
            for key, value in node.items():
                walk(value, f"{where}/{key}")
        elif isinstance(node, list):
            for i, value in enumerate(node):
                walk(value, f"{where}/{i}")

    walk(document, "#")


# MARK: checks

def check_schemas(schemas):
    for name, schema in schemas.items():
        try:
            Draft202012Validator.check_schema(schema)
        except Exception as e:  # noqa: BLE001 - report whatever the meta-schema says
            fail(f"schemas/{name}.json is not valid draft 2020-12: {e}")
        if schema.get("$schema") != "https://json-schema.org/draft/2020-12/schema":
            fail(f"schemas/{name}.json does not declare draft 2020-12")


def check_valid_examples(schemas, registry):
    count = 0
    for directory in sorted((EXAMPLES / "valid").iterdir()):
        if directory.name not in schemas:
            fail(f"examples/valid/{directory.name}: no schema of that name")
            continue
        validator = validator_for(directory.name, registry)
        for file in sorted(directory.glob("*.json")):
            count += 1
            errors = list(validator.iter_errors(json.loads(file.read_text())))
            for e in errors:
                fail(f"examples/valid/{directory.name}/{file.name}: {field_name(e.absolute_path)}: {e.message}")
    for name in schemas:
        if name not in NO_EXAMPLE_NEEDED and not any((EXAMPLES / "valid" / name).glob("*.json")):
            fail(f"schemas/{name}.json has no valid example")
    return count


def check_invalid_examples(schemas, registry):
    index = json.loads((EXAMPLES / "invalid" / "index.json").read_text())["examples"]
    files = {str(p.relative_to(EXAMPLES / "invalid")) for p in (EXAMPLES / "invalid").glob("*/*.json")}
    for missing in sorted(files - index.keys()):
        fail(f"examples/invalid/{missing} is not in index.json")
    for listed in sorted(index.keys() - files):
        fail(f"index.json lists examples/invalid/{listed}, which does not exist")
    for relative, entry in sorted(index.items()):
        if relative not in files:
            continue
        if entry["schema"] != relative.split("/")[0] or entry["schema"] not in schemas:
            fail(f"examples/invalid/{relative}: schema {entry['schema']!r} does not match its folder")
            continue
        expected = [(entry["expectedField"], entry["expectedRule"])] + [
            (x["field"], x["rule"]) for x in entry.get("alsoExpected", [])]
        text = (EXAMPLES / "invalid" / relative).read_text()
        try:
            instance = json.loads(text)
        except json.JSONDecodeError:
            if expected[0] != ("$", "json"):
                fail(f"examples/invalid/{relative} is not JSON but expects {expected[0]}")
            continue
        if expected[0][1] == "json":
            fail(f"examples/invalid/{relative} expects rule json but is valid JSON")
            continue
        found = problems_of(validator_for(entry["schema"], registry), instance)
        if not found:
            fail(f"examples/invalid/{relative} passes its schema")
        for pair in expected:
            if pair not in found:
                fail(f"examples/invalid/{relative}: expected {pair}, the schema reports {sorted(found)}")
    return len(index)


def check_error_codes(schemas, openapi):
    table = {code: v["status"] for code, v in json.loads((ROOT / "error-codes.json").read_text())["codes"].items()}
    enum = schemas["error"]["properties"]["code"]["enum"]
    if sorted(enum) != sorted(table) or len(enum) != len(set(enum)):
        fail(f"error.json code enum {sorted(enum)} != error-codes.json {sorted(table)}")
    responses = openapi["components"]["responses"]
    by_status = {}
    for code, status in table.items():
        by_status.setdefault(status, set()).add(code)
    for status, codes in by_status.items():
        name = f"Error{status}"
        if name not in responses:
            fail(f"openapi.yaml has no components/responses/{name}")
            continue
        schema = openapi["components"]["schemas"][name]
        listed = set(schema["allOf"][1]["properties"]["error"]["properties"]["code"]["enum"])
        if listed != codes:
            fail(f"openapi.yaml {name} lists {sorted(listed)}, error-codes.json says {sorted(codes)}")
    for path, item in openapi["paths"].items():
        for method, operation in item.items():
            if method == "parameters":
                continue
            for status in operation["responses"]:
                code = int(status)
                if code >= 400 and operation["responses"][status].get("$ref") != f"#/components/responses/Error{code}":
                    fail(f"openapi.yaml {method.upper()} {path} {status} is not the shared Error{code} response")
                if code >= 400 and code not in by_status:
                    fail(f"openapi.yaml {method.upper()} {path} answers {status}, which no error code has")


def check_openapi(path):
    from openapi_spec_validator import validate
    from openapi_spec_validator.readers import read_from_filename
    document, base_uri = read_from_filename(str(path))
    try:
        validate(document, base_uri=base_uri)
    except Exception as e:  # noqa: BLE001
        fail(f"openapi.yaml: openapi-spec-validator: {e}")
    return document


def check_asyncapi(path, schemas):
    document = load_document(path)
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore")
            from asyncapi3 import AsyncAPI3
    except ImportError:
        fail("the asyncapi3 package is missing: pip install -r requirements-test.txt")
    else:
        try:
            AsyncAPI3.model_validate(document)
        except Exception as e:  # noqa: BLE001
            fail(f"asyncapi.yaml: AsyncAPI 3.0 object model: {e}")
    if document.get("asyncapi") != "3.0.0":
        fail("asyncapi.yaml is not AsyncAPI 3.0.0")
    channels = document.get("channels", {})
    operations = document.get("operations", {})
    messages = document.get("components", {}).get("messages", {})

    def target(ref, prefix):
        if not isinstance(ref, str) or not ref.startswith(prefix):
            return None
        try:
            return resolve_pointer(document, ref[1:])
        except (KeyError, IndexError):
            return None

    for cname, channel in channels.items():
        for mname, mref in channel.get("messages", {}).items():
            if target(mref.get("$ref"), "#/components/messages/") is None:
                fail(f"asyncapi.yaml channel {cname}: message {mname} is not a components message")
        amqp = channel.get("bindings", {}).get("amqp", {})
        if amqp.get("is") == "routingKey":
            exchange = amqp.get("exchange", {})
            if exchange.get("name") == "inventory.rpc":
                if exchange.get("type") != "direct" or not exchange.get("durable"):
                    fail(f"asyncapi.yaml channel {cname}: inventory.rpc must be a durable direct exchange")
                if channel.get("x-amqp-queue") != f"inventory.{channel.get('address')}":
                    fail(f"asyncapi.yaml channel {cname}: queue must be inventory.<routing key>")
            elif exchange.get("name") == "inventory.events":
                if exchange.get("type") != "topic" or not exchange.get("durable"):
                    fail(f"asyncapi.yaml channel {cname}: inventory.events must be a durable topic exchange")
            else:
                fail(f"asyncapi.yaml channel {cname}: unknown exchange {exchange.get('name')!r}")
    for oname, operation in operations.items():
        channel = target(operation.get("channel", {}).get("$ref"), "#/channels/")
        if channel is None:
            fail(f"asyncapi.yaml operation {oname}: channel does not resolve to a channel")
            continue
        for mref in operation.get("messages", []):
            ref = mref.get("$ref", "")
            if not ref.startswith(operation["channel"]["$ref"] + "/messages/") or target(ref, "#/channels/") is None:
                fail(f"asyncapi.yaml operation {oname}: message {ref} is not one of its channel's")
        reply = operation.get("reply")
        if operation.get("action") == "receive" and channel.get("bindings", {}).get("amqp", {}).get("exchange", {}).get("name") == "inventory.rpc":
            if not reply:
                fail(f"asyncapi.yaml operation {oname}: an RPC operation needs a reply")
                continue
            rchannel = target(reply.get("channel", {}).get("$ref"), "#/channels/")
            if rchannel is None:
                fail(f"asyncapi.yaml operation {oname}: reply channel does not resolve")
            for mref in reply.get("messages", []):
                if target(mref.get("$ref"), "#/channels/") is None:
                    fail(f"asyncapi.yaml operation {oname}: reply message {mref.get('$ref')} does not resolve")
            if reply.get("address", {}).get("location") != "$message.header#/reply_to":
                fail(f"asyncapi.yaml operation {oname}: reply address must be the request's reply_to")
    used = set()
    for mname, message in messages.items():
        payload = message.get("payload", {})
        schema = payload.get("schema", payload)
        refs = [schema.get("$ref")] + [part.get("$ref") for part in schema.get("allOf", [])]
        files = [r for r in refs if isinstance(r, str) and r.startswith("./schemas/")]
        if not files:
            fail(f"asyncapi.yaml message {mname}: payload must $ref a file in ./schemas")
        used.update(pathlib.Path(r.split("#")[0]).stem for r in files)
        if not any(m.get("$ref") == f"#/components/messages/{mname}" for c in channels.values() for m in c.get("messages", {}).values()):
            fail(f"asyncapi.yaml message {mname} is on no channel")
    return document


def validate_dir(directory: pathlib.Path, schemas, registry) -> int:
    count = 0
    for sub in sorted(p for p in directory.iterdir() if p.is_dir()):
        if sub.name not in schemas:
            fail(f"{sub}: no schema {sub.name}")
            continue
        validator = validator_for(sub.name, registry)
        for file in sorted(sub.glob("*.json")):
            count += 1
            for e in validator.iter_errors(json.loads(file.read_text())):
                fail(f"{sub.name}/{file.name}: {field_name(e.absolute_path)}: {e.message}")
    return count


def main(argv) -> int:
    schemas = load_schemas()
    registry = registry_for(schemas)
    if len(argv) == 2 and argv[0] == "--validate":
        count = validate_dir(pathlib.Path(argv[1]), schemas, registry)
        for f in failures:
            print(f"FAIL {f}")
        print(f"{count} documents checked, {len(failures)} problems")
        return 1 if failures or count == 0 else 0
    check_schemas(schemas)
    seen: set = set()
    for document in [ROOT / "asyncapi.yaml", ROOT / "openapi.yaml", *sorted(SCHEMAS.glob("*.json"))]:
        check_refs(document, seen)
    valid = check_valid_examples(schemas, registry)
    invalid = check_invalid_examples(schemas, registry)
    openapi = check_openapi(ROOT / "openapi.yaml")
    check_error_codes(schemas, openapi)
    check_asyncapi(ROOT / "asyncapi.yaml", schemas)
    for f in failures:
        print(f"FAIL {f}")
    print(f"contracts: {len(schemas)} schemas, {valid} valid and {invalid} invalid examples, "
          f"openapi.yaml (openapi-spec-validator), asyncapi.yaml (asyncapi3 model + structure): "
          f"{len(failures)} problems")
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
