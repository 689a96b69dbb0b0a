#!/usr/bin/env python3
"""Write the peer-SAE fixtures with the peer libraries' OWN code.

Standalone: run with any python3.11 (stdlib only here; torch and the peers live
in a throwaway venv that this script creates):

    python3 tests/peer_saes/make_fixtures.py [--venv DIR] [--only saelens,sparsify,saev,overcomplete]
                                             [--set all|peers|serve]
    python3 tests/peer_saes/make_fixtures.py --check-export DIR   # SAELens reads back our export

What it does:
1. creates (or reuses) a venv, default /tmp/cliplens-peer-saes-venv, and
   pip-installs the pinned peers from PyPI (one venv: their deps resolve together);
2. runs tests/peer_saes/peer_writer.py with the venv's python once per peer: it
   builds small SAEs (d_in=16, d_sae=32, k=4), randomises every parameter with a
   fixed seed, saves each with the peer's own save function into
   tests/data/peer_saes/<peer>/<arch>[-variant]/ and writes io.safetensors
   (fixed inputs x and the peer's own encode/decode/forward outputs) and
   expected.json beside it;  with --set serve (or the default --set all) it also
   writes one SAE per peer at the demo CLIP width (d_in=128, d_sae=256, k=8) into
   tests/data/peer_saes/serve/<peer>/, with the same conventions;
3. records versions, fixtures and failures in tests/data/peer_saes/fixtures.json.

`make test` only reads the committed files; it never needs this venv.
No model hub is used: nothing pretrained is downloaded (HF_HUB_OFFLINE=1).
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import platform
import subprocess
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
REPO = HERE.parent.parent
WRITER = HERE / "peer_writer.py"
DEFAULT_OUT = REPO / "tests" / "data" / "peer_saes"
DEFAULT_VENV = Path("/tmp/cliplens-peer-saes-venv")

# Pinned versions (the ones the committed fixtures were written with).
PINS = {
    "saelens": "sae-lens==6.54.12",
    "sparsify": "eai-sparsify==1.3.3",
    "saev": "saev==0.1.0",
    "overcomplete": "overcomplete==0.3.0",
}
# torch is left to the resolver (PyPI has no CPU-only torch wheel for Linux x86_64:
# the CPU builds live only on download.pytorch.org, which is not reachable here).
# It resolved to torch 2.15.0 (CUDA 13 wheels, ~3.5 GB venv); the fixtures are
# computed on CPU regardless.
EXTRA_PINS = ["torch==2.15.0"]
PEERS = list(PINS)
SETS = ["all", "peers", "serve"]
DISTS = {"saelens": "sae-lens", "sparsify": "eai-sparsify", "saev": "saev", "overcomplete": "overcomplete"}


def log(msg: str) -> None:
    print(f"[make_fixtures] {msg}", flush=True)


def venv_python(venv: Path) -> Path:
    return venv / "bin" / "python"


def du(path: Path) -> int:
    total = 0
    for root, _dirs, files in os.walk(path):
        for f in files:
            with contextlib.suppress(OSError):
                total += os.lstat(os.path.join(root, f)).st_size
    return total


def ensure_venv(venv: Path, peers: list[str], no_install: bool) -> dict:
    info: dict = {"venv": str(venv)}
    t0 = time.time()
    if not venv_python(venv).exists():
        log(f"creating venv {venv}")
        subprocess.run([sys.executable, "-m", "venv", str(venv)], check=True)
        subprocess.run(
            [str(venv_python(venv)), "-m", "pip", "install", "-q", "--upgrade", "pip"], check=False
        )
    if not no_install:
        reqs = [PINS[p] for p in peers] + EXTRA_PINS
        log("pip install " + " ".join(reqs))
        r = subprocess.run(
            [str(venv_python(venv)), "-m", "pip", "install", "--progress-bar", "off", *reqs],
            capture_output=True,
            text=True,
        )
        info["pip_returncode"] = r.returncode
        if r.returncode != 0:
            info["pip_error_tail"] = (r.stdout + r.stderr)[-4000:]
            log("pip install failed in the shared venv; trying peers one by one")
            info["per_peer_pip"] = {}
            for p in peers:
                r2 = subprocess.run(
                    [
                        str(venv_python(venv)),
                        "-m",
                        "pip",
                        "install",
                        "--progress-bar",
                        "off",
                        PINS[p],
                        *EXTRA_PINS,
                    ],
                    capture_output=True,
                    text=True,
                )
                info["per_peer_pip"][p] = {
                    "returncode": r2.returncode,
                    "tail": (r2.stdout + r2.stderr)[-2000:] if r2.returncode else "",
                }
    info["install_seconds"] = round(time.time() - t0, 1)
    code = (
        "import importlib.metadata as m, json, sys\n"
        "out={}\n"
        "for d in sys.argv[1:]:\n"
        "    try: out[d]=m.version(d)\n"
        "    except m.PackageNotFoundError: out[d]=None\n"
        "print(json.dumps(out))\n"
    )
    dists = [DISTS[p] for p in PEERS] + ["torch", "numpy", "safetensors", "transformer-lens", "transformers"]
    r = subprocess.run(
        [str(venv_python(venv)), "-c", code, *dists], capture_output=True, text=True, check=True
    )
    info["versions"] = json.loads(r.stdout)
    info["python"] = subprocess.run(
        [str(venv_python(venv)), "-c", "import sys; print(sys.version.split()[0])"],
        capture_output=True,
        text=True,
    ).stdout.strip()
    info["venv_bytes"] = du(venv)
    for k, v in info["versions"].items():
        log(f"  {k}=={v}")
    log(f"venv size {info['venv_bytes'] / 1e9:.2f} GB")
    return info


def writer_env() -> dict:
    env = dict(os.environ)
    env.update(
        {
            "HF_HUB_OFFLINE": "1",
            "TRANSFORMERS_OFFLINE": "1",
            "WANDB_MODE": "disabled",
            "SPARSIFY_DISABLE_TRITON": "1",
            "CUDA_VISIBLE_DEVICES": "",
            "PYTHONHASHSEED": "0",
            "OMP_NUM_THREADS": "1",
            "MKL_NUM_THREADS": "1",
        }
    )
    return env


def run_peer(venv: Path, peer: str, out: Path, cmd: str = "write") -> dict:
    result = out / f".{peer}.{cmd}.result.json"
    t0 = time.time()
    r = subprocess.run(
        [str(venv_python(venv)), str(WRITER), cmd, peer, str(out), str(result)],
        capture_output=True,
        text=True,
        env=writer_env(),
        timeout=1800,
    )
    res: dict
    if result.exists():
        res = json.loads(result.read_text())
        result.unlink()
    else:
        res = {
            "peer": peer,
            "error": f"writer exited {r.returncode} without a result",
            "stderr_tail": r.stderr[-4000:],
        }
    res["seconds"] = round(time.time() - t0, 1)
    if r.returncode != 0 and "error" not in res:
        res["error"] = f"writer exited {r.returncode}"
        res["stderr_tail"] = r.stderr[-4000:]
    return res


def summarise(res: dict) -> None:
    if "error" in res:
        log(f"{res['peer']}: FAILED {res['error']}")
    for f in res.get("fixtures", []):
        if "error" in f:
            log(f"  {f['fixture']}: FAILED {f['error']}")
        else:
            size = sum(f["files"].values())
            log(f"  {f['fixture']}: {size} bytes {sorted(f['files'])}")


def relpaths(res: dict) -> dict:
    for f in res.get("fixtures", []):
        if "dir" in f:
            with contextlib.suppress(ValueError):
                f["dir"] = str(Path(f["dir"]).resolve().relative_to(REPO))
    return res


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument(
        "--venv", type=Path, default=DEFAULT_VENV, help=f"throwaway venv (default {DEFAULT_VENV})"
    )
    ap.add_argument("--only", default="", help="comma-separated subset of " + ",".join(PEERS))
    ap.add_argument(
        "--out", type=Path, default=DEFAULT_OUT, help="fixture root (default tests/data/peer_saes)"
    )
    ap.add_argument("--no-install", action="store_true", help="reuse the venv as is, skip pip install")
    ap.add_argument(
        "--set",
        choices=SETS,
        default="all",
        help="which fixtures to write: 'peers' = the 16-wide set under <out>/<peer>/<arch>/, "
        "'serve' = one 128-wide SAE per peer under <out>/serve/<peer>/, 'all' (default) = both",
    )
    ap.add_argument(
        "--check-export",
        type=Path,
        metavar="DIR",
        help="load a SAELens-format directory with sae_lens.SAE.load_from_disk in the venv, write "
        "DIR/saelens_readback.safetensors (encode/decode/forward on the fixture inputs) and "
        "DIR/saelens_readback.json, record the result in fixtures.json['export_check'], and exit",
    )
    args = ap.parse_args()

    peers = [p.strip() for p in args.only.split(",") if p.strip()] or PEERS
    bad = [p for p in peers if p not in PINS]
    if bad:
        ap.error(f"unknown peer(s) {bad}; choose from {PEERS}")
    out: Path = args.out.resolve()
    out.mkdir(parents=True, exist_ok=True)
    manifest_path = out / "fixtures.json"
    manifest = json.loads(manifest_path.read_text()) if manifest_path.exists() else {}

    if args.check_export:
        venv_info = ensure_venv(args.venv, ["saelens"], args.no_install)
        d = args.check_export.resolve()
        result = out / ".export.result.json"
        r = subprocess.run(
            [str(venv_python(args.venv)), str(WRITER), "check-export", str(d), str(result)],
            capture_output=True,
            text=True,
            env=writer_env(),
        )
        res = json.loads(result.read_text()) if result.exists() else {"error": r.stderr[-4000:]}
        result.unlink(missing_ok=True)
        res["ok"] = r.returncode == 0 and "error" not in res
        res["sae_lens_version"] = venv_info["versions"].get("sae-lens")
        res["checked_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
        manifest["export_check"] = res
        manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
        log(
            ("OK " if res["ok"] else "FAILED ")
            + json.dumps({k: res.get(k) for k in ("loaded_class", "error")})
        )
        return 0 if res["ok"] else 1

    venv_info = ensure_venv(args.venv, peers, args.no_install)
    manifest.setdefault("peers", {})
    manifest["generator"] = "tests/peer_saes/make_fixtures.py (+ tests/peer_saes/peer_writer.py in the venv)"
    manifest["pins"] = PINS | {"torch": EXTRA_PINS[0]}
    manifest["venv"] = {k: venv_info[k] for k in ("python", "versions", "venv_bytes") if k in venv_info}
    manifest["venv"]["host"] = f"{platform.system()} {platform.machine()}"
    if "pip_error_tail" in venv_info:
        manifest["venv"]["pip_error_tail"] = venv_info["pip_error_tail"]
    jobs = []  # (manifest section, writer command, output root)
    if args.set in ("all", "peers"):
        jobs.append(("peers", "write", out))
    if args.set in ("all", "serve"):
        manifest.setdefault("serve", {})
        jobs.append(("serve", "write-serve", out / "serve"))
    for section, cmd, root in jobs:
        root.mkdir(parents=True, exist_ok=True)
        for peer in peers:
            log(f"writing {peer} fixtures ({section} set)")
            if venv_info["versions"].get(DISTS[peer]) is None:
                res = {
                    "peer": peer,
                    "error": "not installed",
                    "pip": venv_info.get("per_peer_pip", {}).get(peer) or venv_info.get("pip_error_tail", ""),
                }
            else:
                try:
                    res = run_peer(args.venv, peer, root, cmd)
                except subprocess.TimeoutExpired as e:
                    res = {"peer": peer, "error": f"timeout: {e}"}
            summarise(res)
            manifest[section][peer] = relpaths(res)
    manifest["written_at"] = time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime())
    manifest_path.write_text(json.dumps(manifest, indent=2, sort_keys=True) + "\n")
    failures = [
        (p, f.get("fixture"), f["error"])
        for section in ("peers", "serve")
        for p, r in manifest.get(section, {}).items()
        for f in ([r] if "error" in r else []) + [f for f in r.get("fixtures", []) if "error" in f]
    ]
    log(f"wrote {manifest_path} ({len(failures)} failure(s))")
    return 0


if __name__ == "__main__":
    sys.exit(main())
