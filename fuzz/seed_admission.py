#!/usr/bin/env python3
"""Writes AdmissionReview bodies for the `admission` fuzz target, one per object of the
YAML files given, as the API server would send them: CREATE of each object, UPDATE of each
with itself as the old object, a dry run, a `status` subresource write, a DELETE, and a few
bodies the webhook must refuse (no uid, another apiVersion, CREATE without an object).

Usage: seed_admission.py OUT_DIR FILE...
"""

import json
import os
import sys

import yaml


def gvk(obj):
    api = str(obj.get("apiVersion", ""))
    group, _, version = api.rpartition("/")
    return {"group": group, "version": version, "kind": str(obj.get("kind", ""))}


def plural(kind):
    return kind.lower() + ("es" if kind.lower().endswith("s") else "s")


def review(obj, n, operation="CREATE", old=None, sub=None, dry=False):
    meta = obj.get("metadata") or {}
    kind = gvk(obj)
    request = {
        "uid": "00000000-0000-0000-0000-%012d" % n,
        "kind": kind,
        "resource": {
            "group": kind["group"],
            "version": kind["version"],
            "resource": plural(kind["kind"]),
        },
        "requestKind": kind,
        "name": meta.get("name", ""),
        "namespace": meta.get("namespace", "default"),
        "operation": operation,
        "userInfo": {"username": "kubernetes-admin", "groups": ["system:masters"]},
        "dryRun": dry,
        "options": {"apiVersion": "meta.k8s.io/v1", "kind": "CreateOptions"},
    }
    if operation in ("CREATE", "UPDATE"):
        request["object"] = obj
    if old is not None:
        request["oldObject"] = old
    if sub:
        request["subResource"] = sub
    return {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview", "request": request}


def main():
    out = sys.argv[1]
    os.makedirs(out, exist_ok=True)
    n = 0

    def write(tag, body):
        nonlocal n
        n += 1
        with open(os.path.join(out, "%s-%04d.json" % (tag, n)), "w") as f:
            json.dump(body, f, default=str)

    for path in sys.argv[2:]:
        try:
            with open(path) as f:
                docs = list(yaml.safe_load_all(f))
        except (yaml.YAMLError, UnicodeDecodeError):
            continue  # broken on purpose: the YAML targets have it
        tag = os.path.basename(path).rsplit(".", 1)[0]
        for i, obj in enumerate(docs):
            if not isinstance(obj, dict) or "kind" not in obj:
                continue
            write(tag, review(obj, n))
            if i % 3 == 0:
                write(tag, review(obj, n, "UPDATE", old=obj))
            if i % 5 == 1:
                write(tag, review(obj, n, dry=True))
            if i % 7 == 2:
                write(tag, review(obj, n, "UPDATE", old=obj, sub="status"))
            if i % 11 == 3:
                write(tag, review(obj, n, "DELETE", old=obj))
    svc = {"apiVersion": "v1", "kind": "Service", "metadata": {"name": "s"}}
    refused = [
        review(svc, 0),
        {"apiVersion": "admission.k8s.io/v1beta1", "kind": "AdmissionReview"},
        {"apiVersion": "admission.k8s.io/v1", "kind": "AdmissionReview"},
    ]
    refused[0]["request"]["uid"] = ""
    no_object = review(svc, 0)
    del no_object["request"]["object"]
    refused.append(no_object)
    for body in refused:
        write("refused", body)
    print("wrote %d AdmissionReview bodies into %s" % (n, out))


if __name__ == "__main__":
    main()
