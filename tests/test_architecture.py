"""The boundaries of ARCHITECTURE.md, checked on every file (import-linter checks them too)."""
from __future__ import annotations

import ast
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
PACKAGES = ("station", "cloudsync", "calibration")
QT = {"PySide6", "pyqtgraph", "shiboken6"}
# each vendor SDK lives in exactly one adapter module
ADAPTERS = {
    "pypylon": {"station/capture/pylon_camera.py"},
    "harvesters": {"station/capture/genicam_camera.py"},
    "genicam": {"station/capture/genicam_camera.py"},
    "boto3": {"station/aws_client.py",
              # Lambda handlers run in AWS, where boto3 is the runtime's own SDK
              "cloudsync/cloud/lambdas/hold_part.py", "cloudsync/cloud/lambdas/mes_writeback.py"},
    "botocore": {"station/aws_client.py"},
    "asyncua": {"cloudsync/sinks/mes_opcua.py",  # the MES client sink
                "station/line/opcua_server.py"},  # the station's own OPC UA server for the line
    "pymodbus": {"station/line/modbus_server.py"},
    "pydicom": {"station/capture/dicom_io.py"},
    "tifffile": {"station/capture/tiff_io.py"},
    "torch": {"station/detect/export_backbone.py"},  # export step only, never imported by the station
    "onnxruntime": {"station/detect/onnx_backbone.py"},
}


def _imports(path: Path) -> set[str]:
    tree = ast.parse(path.read_text(encoding="utf-8"), str(path))
    out = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            out.update(a.name.split(".")[0] for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            out.add(node.module.split(".")[0])
    return out


def _sources():
    for pkg in PACKAGES:
        for path in sorted((ROOT / pkg).rglob("*.py")):
            yield path.relative_to(ROOT).as_posix(), _imports(path)


def test_only_ui_packages_import_qt():
    offenders = [rel for rel, mods in _sources() if mods & QT and "/ui/" not in f"/{rel}"]
    assert offenders == [], f"Qt imported outside a ui/ package: {offenders}"


def test_vendor_sdks_only_in_their_adapter_module():
    offenders = []
    for rel, mods in _sources():
        for sdk, allowed in ADAPTERS.items():
            if sdk in mods and rel not in allowed:
                offenders.append(f"{rel} imports {sdk}")
    assert offenders == []


def test_modules_stay_small():
    big = [(rel, n) for rel, _ in _sources()
           if (n := len((ROOT / rel).read_text(encoding="utf-8").splitlines())) > 800]
    assert big == [], f"modules over 800 lines, split by responsibility: {big}"
