"""Front-end packages installed from npm (`package.json`, `npm ci`) served from node_modules:
no CDN, and only the files listed here."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from flask import Blueprint, abort, send_from_directory

ROOT = Path(__file__).resolve().parent.parent
NODE_MODULES = ROOT / "node_modules"
# package -> the folder inside it whose files may be served
PACKAGES = {"bpmn-js": "dist"}

bp = Blueprint("vendor", __name__, url_prefix="/vendor")


def installed(package: str = "bpmn-js") -> bool:
    return (NODE_MODULES / package / PACKAGES[package]).is_dir()


@bp.get("/<package>/<path:filename>")
def asset(package: str, filename: str) -> Any:
    if package not in PACKAGES:
        abort(404)
    folder = NODE_MODULES / package / PACKAGES[package]
    if not folder.is_dir():
        abort(404, f"{package} is not installed: run `npm ci` in the project folder")
    # send_from_directory refuses paths that leave the folder
    return send_from_directory(folder, filename, max_age=3600)
