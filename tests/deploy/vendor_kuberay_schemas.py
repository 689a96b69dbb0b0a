"""Regenerate the vendored KubeRay schemas of the chart tests from KubeRay CRD yaml files.

    .venv/bin/python tests/deploy/vendor_kuberay_schemas.py CRD_YAML_OR_DIR... [--out DIR]

The inputs are KubeRay CustomResourceDefinitions (``ray.io_rayclusters.yaml``, ``ray.io_rayjobs.yaml``,
``ray.io_rayservices.yaml``, from github.com/ray-project/kuberay, ``ray-operator/config/crd/bases`` at
the release's tag); a directory stands for its ``ray.io_*.yaml`` files. For each CRD this writes
``<out>/ray.io_<plural>.schema.json.gz``: gzip'd JSON holding the kind, the group, the version and that
version's ``openAPIV3Schema``, unchanged, plus the source file's name and sha256. Output is
byte-for-byte reproducible (sorted keys, gzip mtime 0). ``--out`` defaults to
``tests/deploy/kuberay-v1.7.0`` beside this script; pass another folder for another KubeRay release.
"""

from __future__ import annotations

import argparse
import gzip
import hashlib
import json
from pathlib import Path
from typing import Any

import yaml

HERE = Path(__file__).resolve().parent
VERSION = "v1"


def schema_record(crd_file: Path, version: str = VERSION) -> tuple[str, dict[str, Any]]:
    """(plural, record) of one CRD file: its kind and the ``version`` openAPIV3Schema."""
    raw = crd_file.read_bytes()
    crd = yaml.load(raw, Loader=getattr(yaml, "CSafeLoader", yaml.SafeLoader))
    if crd.get("kind") != "CustomResourceDefinition":
        raise SystemExit(f"{crd_file}: not a CustomResourceDefinition (kind {crd.get('kind')!r})")
    spec = crd["spec"]
    served = [v for v in spec["versions"] if v["name"] == version]
    if not served:
        raise SystemExit(f"{crd_file}: no version {version!r} (has {[v['name'] for v in spec['versions']]})")
    record = {
        "kind": spec["names"]["kind"],
        "group": spec["group"],
        "version": version,
        "openAPIV3Schema": served[0]["schema"]["openAPIV3Schema"],
        "source": {"file": crd_file.name, "sha256": hashlib.sha256(raw).hexdigest()},
    }
    return spec["names"]["plural"], record


def write_record(out: Path, group: str, plural: str, record: dict[str, Any]) -> Path:
    path = out / f"{group}_{plural}.schema.json.gz"
    data = json.dumps(record, sort_keys=True, separators=(",", ":")).encode()
    path.write_bytes(gzip.compress(data, compresslevel=9, mtime=0))
    return path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("sources", nargs="+", type=Path, help="KubeRay CRD yaml files, or folders of them")
    parser.add_argument(
        "--out", type=Path, default=HERE / "kuberay-v1.7.0", help="where to write (%(default)s)"
    )
    args = parser.parse_args(argv)
    files: list[Path] = []
    for source in args.sources:
        files += sorted(source.glob("ray.io_*.yaml")) if source.is_dir() else [source]
    if not files:
        parser.error(f"no CRD yaml files in {[str(s) for s in args.sources]}")
    args.out.mkdir(parents=True, exist_ok=True)
    for crd_file in files:
        plural, record = schema_record(crd_file)
        path = write_record(args.out, record["group"], plural, record)
        print(f"{crd_file} -> {path} ({record['kind']}, {path.stat().st_size:,} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
