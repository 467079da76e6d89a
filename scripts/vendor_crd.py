"""Vendor an upstream CustomResourceDefinition for the template's schema tests.

Reads a CRD manifest (a file from the upstream repository at a release tag) and writes
it to tests/schemas/<project>/ as compact JSON, unchanged except that every
``description`` string is dropped: they play no part in validation, and JSON loads in
milliseconds where PyYAML takes a second for KServe's 1.9 MB InferenceService CRD.
Everything that validates (types, properties, required, enums, patterns, defaults,
``x-kubernetes-*`` markers) is kept as upstream wrote it.

    python scripts/vendor_crd.py UPSTREAM.yaml tests/schemas/kserve/NAME.json

tests/schemas/README.md records each file's release, commit and source URL.
"""

from __future__ import annotations

import argparse
import hashlib
import json
import sys
from pathlib import Path
from typing import Any

import yaml


def strip_descriptions(node: Any) -> Any:
    """The node without ``description`` strings (a property named description stays)."""
    if isinstance(node, dict):
        return {
            key: strip_descriptions(value)
            for key, value in node.items()
            if not (key == "description" and isinstance(value, str))
        }
    if isinstance(node, list):
        return [strip_descriptions(item) for item in node]
    return node


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("upstream", type=Path)
    parser.add_argument("target", type=Path)
    args = parser.parse_args(argv)
    raw = args.upstream.read_bytes()
    documents = [d for d in yaml.safe_load_all(raw) if d is not None]
    if not documents or any(d.get("kind") != "CustomResourceDefinition" for d in documents):
        raise SystemExit(f"{args.upstream}: not a CustomResourceDefinition manifest")
    args.target.parent.mkdir(parents=True, exist_ok=True)
    if len(documents) != 1:
        raise SystemExit(f"{args.upstream}: {len(documents)} CRDs; vendor one per file")
    args.target.write_text(json.dumps(strip_descriptions(documents[0]), separators=(",", ":")))
    print(
        f"{args.target}: {args.target.stat().st_size} bytes; "
        f"upstream {len(raw)} bytes, sha256 {hashlib.sha256(raw).hexdigest()}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
