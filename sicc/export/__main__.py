"""python -m sicc.export web DIR [--weights FILE] [--vendor NODE_MODULES_DIST]"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m sicc.export", description=__doc__)
    sub = parser.add_subparsers(dest="target", required=True)
    web = sub.add_parser("web", help="the model bundle of the JavaScript decoder (web/)")
    web.add_argument("directory", type=Path, help="output folder (created; its bundle files are replaced)")
    web.add_argument("--weights", type=Path, default=None, help="weights file (default: the shipped model)")
    web.add_argument("--vendor", type=Path, default=None,
                     help="onnxruntime-web's dist folder (web/node_modules/onnxruntime-web/dist): copy the "
                          "files the page needs into DIRECTORY/../vendor/onnxruntime-web")
    args = parser.parse_args(argv)
    from .web import WebExportError, export_web, vendor_onnxruntime

    try:
        manifest = export_web(args.directory, args.weights)
        if args.vendor:
            vendor_onnxruntime(args.vendor, args.directory.parent / "vendor" / "onnxruntime-web")
    except (WebExportError, OSError) as exc:
        print(f"sicc.export: error: {exc}", file=sys.stderr)
        return 1
    total = sum(f["bytes"] for f in manifest["files"].values())
    print(f"web bundle of model {manifest['model_id']}: {len(manifest['files'])} files, {total} bytes in {args.directory}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
