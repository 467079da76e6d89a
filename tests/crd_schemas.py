"""Validate custom resources against vendored upstream CRD schemas, as strictly as the API server.

kubernetes-validate knows only the built-in kinds. For a custom resource the API server
checks the object against the ``openAPIV3Schema`` of its CRD version and, with strict field
validation (``kubectl apply --validate=strict``, the default since kubectl 1.27), refuses
fields the schema does not declare, except under ``x-kubernetes-preserve-unknown-fields``.
``strict_schema`` turns that rule into JSON Schema (``additionalProperties: false`` on every
object that lists its properties and neither preserves unknown fields nor declares its own
``additionalProperties``); ``metadata`` is checked against Kubernetes' own ObjectMeta schema
(strict), through kubernetes-validate. CEL rules (``x-kubernetes-validations``) are not
evaluated (``CrdVersion.has_cel_rules`` tells whether a schema has any).

The CRDs live in ``tests/schemas/<project>/`` (one upstream file each, YAML as upstream
ships it or compact JSON without descriptions from ``scripts/vendor_crd.py``; ``SOURCE.md``
or ``tests/schemas/README.md`` records the release and URL). Use::

    schemas = CrdSchemas.load(SCHEMAS / "prometheus-operator")
    problems = schemas.validate(document)   # [] when valid; KeyError for an unknown kind

or, against every vendored CRD at once, ``validate_custom_resource(document)`` (messages
prefixed with the kind and name; an apiVersion/kind no vendored CRD serves is a problem too).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable
from dataclasses import dataclass, field
from functools import cache
from pathlib import Path
from typing import Any

import jsonschema
import kubernetes_validate
import yaml

SCHEMAS = Path(__file__).resolve().parent / "schemas"


def strict_schema(schema: dict[str, Any]) -> dict[str, Any]:
    """A copy of a CRD's structural schema that refuses undeclared fields, as the API server."""
    result = copy.deepcopy(schema)
    _close(result)
    return result


def _close(node: Any) -> None:
    if isinstance(node, list):
        for item in node:
            _close(item)
        return
    if not isinstance(node, dict):
        return
    if (
        "properties" in node
        and "additionalProperties" not in node
        and not node.get("x-kubernetes-preserve-unknown-fields", False)
    ):
        node["additionalProperties"] = False
    for key, value in node.items():
        if key in {"properties", "patternProperties"}:
            for child in value.values():
                _close(child)
        elif key in {"items", "additionalProperties", "not"} or key in {"allOf", "anyOf", "oneOf"}:
            _close(value)


@dataclass(frozen=True)
class CrdVersion:
    api_version: str  # group/version, e.g. monitoring.coreos.com/v1
    kind: str
    schema: dict[str, Any]  # strict
    has_cel_rules: bool


@dataclass
class CrdSchemas:
    """The served versions of a set of CRDs, by (apiVersion, kind)."""

    versions: dict[tuple[str, str], CrdVersion] = field(default_factory=dict)

    @classmethod
    def load(cls, *folders: Path) -> CrdSchemas:
        schemas = cls()
        for folder in folders:
            for path in sorted(folder.glob("*.yaml")):
                schemas.add(yaml.safe_load_all(path.read_text(encoding="utf-8")))
            for path in sorted(folder.glob("*.json")):
                schemas.add([json.loads(path.read_text(encoding="utf-8"))])
        if not schemas.versions:
            raise FileNotFoundError(f"no CustomResourceDefinition in {[str(f) for f in folders]}")
        return schemas

    def add(self, documents: Iterable[Any]) -> None:
        for crd in documents:
            if not isinstance(crd, dict) or crd.get("kind") != "CustomResourceDefinition":
                continue
            spec = crd["spec"]
            for version in spec["versions"]:
                if not version.get("served", True):
                    continue
                schema = version["schema"]["openAPIV3Schema"]
                key = (f"{spec['group']}/{version['name']}", spec["names"]["kind"])
                self.versions[key] = CrdVersion(
                    api_version=key[0],
                    kind=key[1],
                    schema=strict_schema(schema),
                    has_cel_rules="x-kubernetes-validations" in json.dumps(schema),
                )

    def knows(self, document: dict[str, Any]) -> bool:
        return (document.get("apiVersion"), document.get("kind")) in self.versions

    def validate(self, document: dict[str, Any], kubernetes_version: str = "1.37.0") -> list[str]:
        """Every problem with ``document`` (an empty list when it is valid)."""
        crd = self.versions[(document["apiVersion"], document["kind"])]
        validator = _validator(crd)
        problems = [
            f"{'.'.join(str(part) for part in error.absolute_path) or '<root>'}: {error.message}"
            for error in sorted(validator.iter_errors(document), key=lambda e: list(e.path))
        ]
        problems += object_meta_problems(document.get("metadata"), kubernetes_version)
        return problems


def object_meta_problems(metadata: Any, kubernetes_version: str) -> list[str]:
    """ObjectMeta checked by Kubernetes' own schema (strict): the CRD only says `type: object`."""
    if not isinstance(metadata, dict) or not metadata.get("name"):
        return ["metadata.name: required"]
    carrier = {"apiVersion": "v1", "kind": "ConfigMap", "metadata": metadata}
    try:
        kubernetes_validate.validate(carrier, kubernetes_version, strict=True)
    except kubernetes_validate.ValidationError as exc:
        # its message only: str(exc) would print the whole ObjectMeta schema
        path = ".".join(str(part) for part in exc.absolute_path)
        return [f"{path or 'metadata'}: {exc.message}"]
    return []


_VALIDATORS: dict[tuple[str, str], jsonschema.Draft7Validator] = {}


def _validator(crd: CrdVersion) -> jsonschema.Draft7Validator:
    """One validator per CRD version: building one walks KServe's 600 kB schema."""
    key = (crd.api_version, crd.kind)
    if key not in _VALIDATORS:
        _VALIDATORS[key] = jsonschema.Draft7Validator(crd.schema)
    return _VALIDATORS[key]


DNS_SUBDOMAIN = re.compile(r"[a-z0-9]([-a-z0-9]*[a-z0-9])?(\.[a-z0-9]([-a-z0-9]*[a-z0-9])?)*")


@cache
def vendored() -> CrdSchemas:
    """Every CRD vendored under tests/schemas/, one folder per upstream project."""
    return CrdSchemas.load(*sorted(path for path in SCHEMAS.iterdir() if path.is_dir()))


def served_schemas() -> set[tuple[str, str]]:
    """(apiVersion, kind) of every served version of every vendored CRD."""
    return set(vendored().versions)


def validate_custom_resource(document: dict[str, Any]) -> list[str]:
    """Problems with one custom resource against the vendored CRD serving it (empty: valid)."""
    kind, api_version = document.get("kind"), document.get("apiVersion")
    name = (document.get("metadata") or {}).get("name", "?")
    schemas = vendored()
    if not schemas.knows(document):
        return [f"{kind} {name}: no vendored CRD serves {api_version} {kind}"]
    problems = schemas.validate(document)
    # ObjectMeta's schema says only "string"; the API server wants a DNS subdomain
    if isinstance(name, str) and not (DNS_SUBDOMAIN.fullmatch(name) and len(name) <= 253):
        problems.append(f"metadata.name: {name!r} is not a DNS subdomain")
    return [f"{kind} {name}: {problem}" for problem in problems]
