#!/usr/bin/env python3
"""Extracts, from Veeam's VBR OpenAPI specs, the response schemas of the operations the simulator
serves, into one JSON-Schema (draft 7) bundle per spec revision: vbr_<revision>.json.

Source: /work/shared/reference/veeam-vbr-rest/vbr_rest_<revision>.json (Cenvora/veeam-br,
openapi_schemas/, unmodified). Run from anywhere:

    python3 crates/veeam-vbr-sim/tests/schemas/extract.py [SPEC_DIR]

Two rewrites turn OpenAPI 3.0 into plain JSON Schema, and nothing else is changed:
- `nullable: true` becomes a type union with "null".
- `oneOf` + `discriminator` becomes "if <property> == <key> then <mapped schema>" per mapping
  entry (OpenAPI's meaning of a discriminator); inside a mapped subtype, its `allOf` reference
  back to the base points to the base without the `oneOf`, which would otherwise recurse
  forever. Mapping entries naming schemas that the spec does not define are dropped.
"""
import json
import os
import sys

OPERATIONS = [
    ("post", "/api/oauth2/token"), ("post", "/api/oauth2/logout"),
    ("get", "/api/v1/serverInfo"), ("get", "/api/v1/serverTime"),
    ("get", "/api/v1/backupObjects"), ("get", "/api/v1/backupObjects/{id}/restorePoints"),
    ("get", "/api/v1/restorePoints"), ("get", "/api/v1/restorePoints/{id}"),
    ("post", "/api/v1/restore/flr"), ("post", "/api/v1/restore/flr/{sessionId}/unmount"),
    ("get", "/api/v1/backupBrowser/flr"), ("get", "/api/v1/backupBrowser/flr/{sessionId}"),
    ("post", "/api/v1/backupBrowser/flr/{sessionId}/browse"),
    ("post", "/api/v1/backupBrowser/flr/{sessionId}/prepareDownload"),
    ("post", "/api/v1/backupBrowser/flr/{sessionId}/prepareDownload/{taskId}/download"),
    ("post", "/api/v1/backupBrowser/flr/{sessionId}/restore"),
    ("get", "/api/v1/tasks"), ("get", "/api/v1/tasks/{id}"), ("post", "/api/v1/tasks/{id}/stop"),
    ("get", "/api/v1/sessions"), ("get", "/api/v1/sessions/{id}"), ("post", "/api/v1/sessions/{id}/stop"),
]
REVISIONS = ["1.2-rev1", "1.3-rev1", "1.3-rev2"]
PREFIX = "#/components/schemas/"


def resolve(spec, obj):
    while "$ref" in obj:
        node = spec
        for part in obj["$ref"].lstrip("#/").split("/"):
            node = node[part]
        obj = node
    return obj


def convert(node, schemas, base_of=None):
    """Copies a schema node, rewriting refs, nullable and discriminators."""
    if isinstance(node, list):
        return [convert(n, schemas, base_of) for n in node]
    if not isinstance(node, dict):
        return node
    out = {}
    for k, v in node.items():
        if k in ("example", "discriminator", "xml", "deprecated", "readOnly", "writeOnly"):
            continue
        if k == "$ref":
            name = v[len(PREFIX):]
            if base_of is not None and name == base_of:
                name = name + "__base"
            out["$ref"] = "#/definitions/" + name
        elif k == "oneOf" and "discriminator" in node:
            disc = node["discriminator"]
            prop = disc["propertyName"]
            branches = []
            for key, ref in disc.get("mapping", {}).items():
                target = ref[len(PREFIX):]
                if target not in schemas:
                    continue
                branches.append({
                    "if": {"properties": {prop: {"const": key}}, "required": [prop]},
                    "then": {"$ref": "#/definitions/" + target},
                })
            out["allOf"] = out.get("allOf", []) + branches
        elif k == "allOf":
            out["allOf"] = out.get("allOf", []) + convert(v, schemas, base_of)
        else:
            out[k] = convert(v, schemas, base_of)
    if out.pop("nullable", False) and isinstance(out.get("type"), str):
        out["type"] = [out["type"], "null"]
    return out


def refs_in(node, acc):
    if isinstance(node, dict):
        for k, v in node.items():
            if k == "$ref" and isinstance(v, str) and v.startswith(PREFIX):
                acc.add(v[len(PREFIX):])
            else:
                refs_in(v, acc)
    elif isinstance(node, list):
        for v in node:
            refs_in(v, acc)


def closure(schemas, roots):
    seen, todo = set(), list(roots)
    while todo:
        n = todo.pop()
        if n in seen or n not in schemas:
            continue
        seen.add(n)
        acc = set()
        refs_in(schemas[n], acc)
        disc = schemas[n].get("discriminator", {})
        acc.update(r[len(PREFIX):] for r in disc.get("mapping", {}).values())
        todo.extend(acc)
    return {n for n in seen if n in schemas}


def bundle(spec, source):
    schemas = spec["components"]["schemas"]
    ops, roots = {}, set()
    for method, path in OPERATIONS:
        op = spec["paths"][path][method]
        codes = {}
        for code, resp in op["responses"].items():
            resp = resolve(spec, resp)
            content = resp.get("content", {})
            if "application/json" in content:
                schema = content["application/json"]["schema"]
                refs_in(schema, roots)
                codes[code] = convert(schema, schemas)
            elif content:
                codes[code] = {"binary": sorted(content)}
            else:
                codes[code] = {}
        ops[f"{method.upper()} {path}"] = codes
    roots.add("Error")
    names = closure(schemas, roots)
    defs = {}
    for n in sorted(names):
        s = schemas[n]
        defs[n] = convert(s, schemas)
        # Subtypes of a discriminated base refer to the base from their allOf.
        for base in names:
            b = schemas[base]
            if "discriminator" in b and any(r[len(PREFIX):] == n for r in b["discriminator"].get("mapping", {}).values()):
                defs[n] = convert(s, schemas, base_of=base)
                defs[base + "__base"] = convert({k: v for k, v in b.items() if k not in ("oneOf", "discriminator")}, schemas)
    param = resolve(spec, spec["paths"]["/api/oauth2/token"]["post"]["parameters"][0])
    return {"source": source, "x-api-version": param["schema"]["default"],
            "operations": ops, "definitions": defs}


def main():
    spec_dir = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/reference/veeam-vbr-rest"
    here = os.path.dirname(os.path.abspath(__file__))
    for rev in REVISIONS:
        name = f"vbr_rest_{rev}.json"
        with open(os.path.join(spec_dir, name)) as f:
            spec = json.load(f)
        out = bundle(spec, name)
        with open(os.path.join(here, f"vbr_{rev}.json"), "w") as f:
            json.dump(out, f, indent=1, sort_keys=True)
            f.write("\n")
        print(f"vbr_{rev}.json: {len(out['operations'])} operations, {len(out['definitions'])} definitions")


if __name__ == "__main__":
    main()
