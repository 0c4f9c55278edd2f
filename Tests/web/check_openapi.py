#!/usr/bin/env python3
"""Check Docs/openapi.yaml: it must be a valid OpenAPI document, and it must describe every route given.

Usage:
    check_openapi.py [--spec FILE] [--paths-file FILE]... [--exact] [ROUTE ...]

A ROUTE is a path in OpenAPI template form (`/api/v1/projects/{project}/runs`), optionally preceded by an
HTTP method (`GET /api/v1/projects/{project}/runs`), in which case that operation must exist too. Template
parameter names do not matter (`{p}` matches `{project}`); `:name` and `<name>` segments are read as
`{name}`, and a trailing `/` is ignored. A paths file holds one ROUTE per line (blank lines and `#` comments
are skipped); `-` reads stdin. With `--exact`, every path of the document must also be among the routes given.

Prints `ok` and exits 0 when everything holds; otherwise prints what is wrong to stderr and exits 1
(2 when the validator is not installed or the arguments are wrong).
"""
import argparse
import os
import re
import sys

METHODS = ("get", "put", "post", "delete", "options", "head", "patch", "trace")
DEFAULT_SPEC = os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "..", "Docs", "openapi.yaml")


def normalise(path):
    """The shape of a path template: every parameter segment becomes `{}`."""
    path = path.strip()
    if len(path) > 1 and path.endswith("/"):
        path = path[:-1]
    if not path.startswith("/"):
        path = "/" + path
    path = re.sub(r"\{[^{}/]*\}", "{}", path)
    path = re.sub(r"(?<=/):[^/]+", "{}", path)
    path = re.sub(r"(?<=/)<[^<>/]*>", "{}", path)
    return path


def parse_route(text):
    """(method or None, path) from `PATH` or `METHOD PATH`."""
    parts = text.split()
    if len(parts) == 1:
        return None, parts[0]
    if len(parts) == 2 and parts[0].lower() in METHODS:
        return parts[0].lower(), parts[1]
    raise ValueError("not a route: %r" % text)


def read_routes(files, args):
    routes = []
    for name in files:
        stream = sys.stdin if name == "-" else open(name, encoding="utf-8")
        try:
            for line in stream:
                line = line.split("#", 1)[0].strip()
                if line:
                    routes.append(line)
        finally:
            if stream is not sys.stdin:
                stream.close()
    routes.extend(a for a in args if a.strip())
    return routes


def main(argv):
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--spec", default=DEFAULT_SPEC, help="the OpenAPI document (default: Docs/openapi.yaml)")
    parser.add_argument("--paths-file", action="append", default=[], help="a file of routes, one a line (- for stdin)")
    parser.add_argument("--exact", action="store_true", help="every document path must be among the routes given")
    parser.add_argument("routes", nargs="*", help="routes that must be in the document")
    opts = parser.parse_args(argv)

    try:
        from openapi_spec_validator import validate
        from openapi_spec_validator.readers import read_from_filename
    except ImportError as e:
        print("check_openapi: openapi-spec-validator is not installed (%s)" % e, file=sys.stderr)
        return 2

    try:
        doc, _ = read_from_filename(opts.spec)
        validate(doc)
    except Exception as e:  # the validator's errors have no common base class worth naming
        print("check_openapi: %s is not a valid OpenAPI document: %s" % (opts.spec, e), file=sys.stderr)
        return 1

    if not str(doc.get("openapi", "")).startswith("3.0."):
        print("check_openapi: expected OpenAPI 3.0.x, got %r" % doc.get("openapi"), file=sys.stderr)
        return 1

    documented = {}
    for path, item in (doc.get("paths") or {}).items():
        methods = {m for m in item if m in METHODS}
        documented.setdefault(normalise(path), set()).update(methods)

    try:
        routes = [parse_route(r) for r in read_routes(opts.paths_file, opts.routes)]
    except (OSError, ValueError) as e:
        print("check_openapi: %s" % e, file=sys.stderr)
        return 2

    problems = []
    given = set()
    for method, path in routes:
        shape = normalise(path)
        given.add(shape)
        if shape not in documented:
            problems.append("missing path: %s" % path)
        elif method and method not in documented[shape]:
            problems.append("missing operation: %s %s" % (method.upper(), path))
    if opts.exact:
        for path in doc.get("paths") or {}:
            if normalise(path) not in given:
                problems.append("documented but not routed: %s" % path)

    if problems:
        for p in problems:
            print("check_openapi: %s" % p, file=sys.stderr)
        return 1
    print("ok")
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
