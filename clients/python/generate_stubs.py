"""Generate the Python gRPC stubs of ``protos/cliplens/v1`` and ``protos/inference`` into ``cliplens_client/v1``.

Run from anywhere: ``.venv/bin/python clients/python/generate_stubs.py`` (needs grpcio-tools).
protoc names the generated packages after the proto paths (``cliplens.v1``, ``inference``); the imports
are rewritten to ``cliplens_client.v1`` so the stubs work inside this package, while the descriptors
keep the proto file names (``cliplens/v1/*.proto``, ``inference/grpc_predict_v2.proto``).
``--out DIR`` writes elsewhere (the drift test uses it).

The Open Inference Protocol's stubs (``inference``, vendored) load into a descriptor pool of their own
instead of protobuf's default pool: other copies of that protocol (tritonclient's, KServe's, MLServer's)
define the same ``inference.*`` names in the default pool, and two definitions of a name in one pool
fail at import. The wire format does not depend on the pool.
"""

from __future__ import annotations

import argparse
import re
import sys
import tempfile
from pathlib import Path

from grpc_tools import protoc

CLIENT_DIR = Path(__file__).resolve().parent
PROTO_ROOT = CLIENT_DIR.parent.parent / "protos"
PROTO_PACKAGES = (Path("cliplens", "v1"), Path("inference"))
# Packages whose stubs get a descriptor pool of their own (see the module's docstring).
PRIVATE_POOL_PACKAGES = (Path("inference"),)
STUBS_DIR = CLIENT_DIR / "cliplens_client" / "v1"
STUB_GLOBS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
# protoc's names for the generated modules (imports, and the module name given to the message builder).
MODULE_REWRITES = (
    (re.compile(r"^(from|import) cliplens\.v1\b", re.MULTILINE), r"\1 cliplens_client.v1"),
    (re.compile(r"'cliplens\.v1\.(\w+_pb2)'"), r"'cliplens_client.v1.\1'"),
    (re.compile(r"^from inference import\b", re.MULTILINE), "from cliplens_client.v1 import"),
    (re.compile(r"'inference\.(\w+_pb2)'"), r"'cliplens_client.v1.\1'"),
)
DEFAULT_POOL_FILE = "DESCRIPTOR = _descriptor_pool.Default().AddSerializedFile("
PRIVATE_POOL_FILE = (
    "# A descriptor pool of its own, beside other copies of this protocol (clients/python/generate_stubs.py).\n"
    "POOL = _descriptor_pool.DescriptorPool()\n"
    "DESCRIPTOR = POOL.AddSerializedFile("
)


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs into ``out_dir``, replacing stale ones; returns the written files."""
    protos = []
    for package in PROTO_PACKAGES:
        found = sorted(str(path.relative_to(PROTO_ROOT)) for path in (PROTO_ROOT / package).glob("*.proto"))
        if not found:
            raise SystemExit(f"no .proto files found in {PROTO_ROOT / package}")
        protos += found
    with tempfile.TemporaryDirectory() as raw:
        args = [
            "protoc",
            f"-I{PROTO_ROOT}",
            f"--python_out={raw}",
            f"--pyi_out={raw}",
            f"--grpc_python_out={raw}",
        ]
        if protoc.main([*args, *protos]) != 0:
            raise SystemExit("protoc failed; see the messages above")
        generated = sorted(
            (path, package)
            for package in PROTO_PACKAGES
            for pattern in STUB_GLOBS
            for path in (Path(raw) / package).glob(pattern)
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        for pattern in STUB_GLOBS:
            for stale in out_dir.glob(pattern):
                stale.unlink()
        written = []
        for source, package in generated:
            target = out_dir / source.name
            text = _rewrite_module_names(source.read_text())
            if package in PRIVATE_POOL_PACKAGES:
                text = _own_pool(text, source.name)
            target.write_text(text)
            written.append(target)
    return written


def _rewrite_module_names(text: str) -> str:
    for pattern, replacement in MODULE_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def _own_pool(text: str, name: str) -> str:
    """A ``*_pb2.py`` module's descriptors in a pool of its own instead of the default pool."""
    if not name.endswith("_pb2.py"):
        return text
    if text.count(DEFAULT_POOL_FILE) != 1:
        raise SystemExit(f"{name}: expected one {DEFAULT_POOL_FILE!r}; has protoc's output changed?")
    return text.replace(DEFAULT_POOL_FILE, PRIVATE_POOL_FILE)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUBS_DIR, help=f"output directory (default {STUBS_DIR})")
    out_dir: Path = parser.parse_args(argv).out
    for path in generate(out_dir):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
