"""Generate the Python gRPC stubs of ``protos/cliplens/v1`` into ``cliplens_client/v1``.

Run from anywhere: ``.venv/bin/python clients/python/generate_stubs.py`` (needs grpcio-tools).
protoc names the generated package after the proto path (``cliplens.v1``); the imports are rewritten
to ``cliplens_client.v1`` so the stubs work inside this package, while the descriptors keep the
proto file names ``cliplens/v1/*.proto``. ``--out DIR`` writes elsewhere (the drift test uses it).
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
PROTO_PACKAGE = Path("cliplens", "v1")
STUBS_DIR = CLIENT_DIR / "cliplens_client" / "v1"
STUB_GLOBS = ("*_pb2.py", "*_pb2.pyi", "*_pb2_grpc.py")
# protoc's names for the generated modules (imports, and the module name given to the message builder).
MODULE_REWRITES = (
    (re.compile(r"^(from|import) cliplens\.v1\b", re.MULTILINE), r"\1 cliplens_client.v1"),
    (re.compile(r"'cliplens\.v1\.(\w+_pb2)'"), r"'cliplens_client.v1.\1'"),
)


def generate(out_dir: Path) -> list[Path]:
    """Write the stubs into ``out_dir``, replacing stale ones; returns the written files."""
    protos = sorted(
        str(path.relative_to(PROTO_ROOT)) for path in (PROTO_ROOT / PROTO_PACKAGE).glob("*.proto")
    )
    if not protos:
        raise SystemExit(f"no .proto files found in {PROTO_ROOT / PROTO_PACKAGE}")
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
            path for pattern in STUB_GLOBS for path in (Path(raw) / PROTO_PACKAGE).glob(pattern)
        )
        out_dir.mkdir(parents=True, exist_ok=True)
        for pattern in STUB_GLOBS:
            for stale in out_dir.glob(pattern):
                stale.unlink()
        written = []
        for source in generated:
            target = out_dir / source.name
            target.write_text(_rewrite_module_names(source.read_text()))
            written.append(target)
    return written


def _rewrite_module_names(text: str) -> str:
    for pattern, replacement in MODULE_REWRITES:
        text = pattern.sub(replacement, text)
    return text


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--out", type=Path, default=STUBS_DIR, help=f"output directory (default {STUBS_DIR})")
    out_dir: Path = parser.parse_args(argv).out
    for path in generate(out_dir):
        print(path)


if __name__ == "__main__":
    main(sys.argv[1:])
