"""Write the DA3 golden data with the official ``depth-anything-3`` package (run OUTSIDE geovr's env).

    python -m venv /tmp/scratch-da3
    /tmp/scratch-da3/bin/pip install torch==2.14.1 "numpy<2" einops addict omegaconf safetensors
    /tmp/scratch-da3/bin/pip install --no-deps depth-anything-3==0.1.1
    /tmp/scratch-da3/bin/python make_golden.py OUT_DIR

It builds the package's own classes (``DinoVisionTransformer``, ``DualDPT``, ``DPT``, ``CameraDec``,
``CameraEnc``, ``DepthAnything3Net``) at the tiny sizes of ``geovr_plugin_da3/configs/tiny*.json``
with seeded random weights, runs them in float32 on CPU on fixed random frames (ImageNet-normalised as
the released GeoVR wrapper does, reference view = first frame) and stores weights (official key names),
inputs and outputs; it also records the official full-size state-dict shapes of DA3-GIANT and
DA3METRIC-LARGE (built on the meta device, without the 3-D Gaussian branch). Nothing here is imported by the tests.
"""

import json
import sys
from pathlib import Path

import torch
from depth_anything_3.cfg import create_object, load_config
from depth_anything_3.model.cam_dec import CameraDec
from depth_anything_3.model.cam_enc import CameraEnc
from depth_anything_3.model.da3 import DepthAnything3Net
from depth_anything_3.model.dinov2.dinov2 import DinoV2
from depth_anything_3.model.dinov2.vision_transformer import DinoVisionTransformer
from depth_anything_3.model.dpt import DPT
from depth_anything_3.model.dualdpt import DualDPT
from safetensors.torch import save_file

MEAN = torch.tensor([0.485, 0.456, 0.406]).view(1, 1, 3, 1, 1)
STD = torch.tensor([0.229, 0.224, 0.225]).view(1, 1, 3, 1, 1)


def backbone(embed, depth, heads, ffn, out_layers, alt, cat):
    wrapper = DinoV2(name="vits", out_layers=out_layers, alt_start=alt, qknorm_start=alt, rope_start=alt, cat_token=cat)
    wrapper.pretrained = DinoVisionTransformer(
        img_size=56,
        patch_size=14,
        embed_dim=embed,
        depth=depth,
        num_heads=heads,
        mlp_ratio=4,
        ffn_layer=ffn,
        alt_start=alt,
        qknorm_start=alt,
        rope_start=alt,
        cat_token=cat,
    )
    return wrapper


def randomise(model, seed):
    g = torch.Generator().manual_seed(seed)
    with torch.no_grad():
        for name, p in model.named_parameters():
            leaf = name.rsplit(".", 1)[-1]
            if leaf == "gamma" or (leaf == "weight" and p.ndim == 1):
                p.copy_(1.0 + 0.2 * torch.randn(p.shape, generator=g))
            elif leaf == "bias" and p.ndim == 1:
                p.copy_(0.1 * torch.randn(p.shape, generator=g))
            elif leaf in ("cls_token", "pos_embed", "camera_token"):
                p.copy_(0.5 * torch.randn(p.shape, generator=g))
            else:
                fan_in = p[0].numel() if p.ndim > 1 else p.numel()
                p.copy_(torch.randn(p.shape, generator=g) / fan_in**0.5)


def run(net, images, export):
    captured = {}
    net.head.register_forward_hook(lambda m, a, out: captured.update(head={k: v.clone() for k, v in out.items()}))
    if net.cam_dec is not None:
        net.cam_dec.register_forward_hook(lambda m, a, out: captured.update(pose_enc=out.clone()))
    with torch.no_grad():
        out = net((images - MEAN) / STD, export_feat_layers=export, ref_view_strategy="first")
    return out, captured


def main(out_dir: Path):
    torch.manual_seed(0)
    # any-view model (DA3-GIANT mechanisms at test size)
    net = DepthAnything3Net(
        net=backbone(32, 8, 2, "swiglufused", [3, 5, 6, 7], 3, True),
        head=DualDPT(dim_in=64, output_dim=2, features=16, out_channels=[8, 16, 16, 16]),
        cam_dec=CameraDec(dim_in=64),
        cam_enc=CameraEnc(dim_out=32, trunk_depth=1, num_heads=2),
    ).eval()
    randomise(net, 1)
    save_file(
        {k: v.clone().contiguous() for k, v in net.state_dict().items()}, str(out_dir / "da3_tiny_weights.safetensors")
    )
    g = torch.Generator().manual_seed(2)
    io = {}
    for case, shape in (("a", (1, 3, 3, 42, 56)), ("b", (2, 2, 3, 56, 56))):
        images = torch.rand(shape, generator=g)
        out, cap = run(net, images, [2, 4, 5, 7])
        io[f"{case}.images"] = images
        io[f"{case}.depth"] = out.depth
        io[f"{case}.depth_conf"] = out.depth_conf
        io[f"{case}.pose_enc_c2w"] = cap["pose_enc"]
        io[f"{case}.extrinsics_w2c"] = out.extrinsics[..., :3, :]
        io[f"{case}.intrinsics"] = out.intrinsics
        for k, v in out.aux.items():
            io[f"{case}.{k}"] = v
    save_file({k: v.contiguous().float() for k, v in io.items()}, str(out_dir / "da3_tiny_io.safetensors"))

    # metric model (DA3METRIC-LARGE mechanisms at test size)
    torch.manual_seed(3)
    metric = DepthAnything3Net(
        net=backbone(32, 4, 2, "mlp", [0, 1, 2, 3], -1, False),
        head=DPT(dim_in=32, output_dim=1, features=16, out_channels=[8, 16, 16, 16]),
    ).eval()
    randomise(metric, 4)
    save_file(
        {k: v.clone().contiguous() for k, v in metric.state_dict().items()},
        str(out_dir / "metric_tiny_weights.safetensors"),
    )
    io = {}
    images = torch.rand((1, 2, 3, 42, 56), generator=g)
    out, cap = run(metric, images, [])
    io["a.images"] = images
    io["a.depth_raw"] = cap["head"]["depth"]
    io["a.sky"] = cap["head"]["sky"]
    io["a.depth_post"] = out.depth
    save_file({k: v.contiguous().float() for k, v in io.items()}, str(out_dir / "metric_tiny_io.safetensors"))

    # full-size official state-dict layouts
    pkg = Path(sys.modules["depth_anything_3"].__path__[0])
    shapes = {}
    linspace = torch.linspace  # the ViT reads drop-path rates with .item(): keep that one tensor on the CPU
    torch.linspace = lambda *a, **k: linspace(*a, **{**k, "device": "cpu"})
    for name in ("da3-giant", "da3metric-large"):
        cfg = load_config(str(pkg / "configs" / f"{name}.yaml"))
        for unused in ("gs_head", "gs_adapter"):  # the 3-D Gaussian branch (GeoVR's copy drops it too)
            cfg.pop(unused, None)
        with torch.device("meta"):
            model = create_object(cfg)
        sd = model.state_dict()
        shapes[name] = {
            "parameters": sum(p.numel() for p in model.parameters()),
            "state_dict": {k: list(v.shape) for k, v in sd.items()},
        }
    (out_dir / "official_shapes.json").write_text(json.dumps(shapes, indent=0, sort_keys=True))
    print("wrote", sorted(p.name for p in out_dir.iterdir()))


if __name__ == "__main__":
    main(Path(sys.argv[1]))
