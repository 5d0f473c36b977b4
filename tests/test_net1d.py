import json

import numpy as np
import pytest
import torch

from edge_sdk.labels import LabelTable

from distill.checkpoint import load_net1d, save_checkpoint, load_model
from distill.net1d import ECGFOUNDER_1LEAD, Net1D, Net1DConfig
from distill.errors import CheckpointError


def test_small_official_checkpoint_reproduces_official_logits(reference):
    cfg = json.loads((reference / "net1d_small_config.json").read_text())
    model, _ = load_net1d(reference / "net1d_small_checkpoint.pth", cfg["config"])
    assert sum(p.numel() for p in model.parameters()) == cfg["n_params"]
    with np.load(reference / "net1d_small_io.npz") as io:
        x, expected = io["x"], io["logits"]
    with torch.no_grad():
        logits = model(torch.from_numpy(x)).numpy()
    assert logits.shape == (4, 150)
    np.testing.assert_allclose(logits, expected, atol=1e-5, rtol=0)


def test_full_config_matches_official_manifest(reference):
    manifest = json.loads((reference / "net1d_1lead_full_manifest.json").read_text())
    assert Net1DConfig.from_dict(manifest["config"]) == ECGFOUNDER_1LEAD
    model = Net1D(ECGFOUNDER_1LEAD)
    shapes = [[k, list(v.shape)] for k, v in model.state_dict().items()]
    assert shapes == manifest["keys"]
    assert sum(p.numel() for p in model.parameters()) == manifest["n_params"] == 30_807_750


def test_labels_file_has_150_names(reference):
    names = (reference / "tasks.txt").read_text().splitlines()
    assert len(names) == 150 and names[1] == "NORMAL SINUS RHYTHM" and "ATRIAL FIBRILLATION" in names


def test_checkpoint_errors(tmp_path, reference):
    with pytest.raises(CheckpointError, match="not found"):
        load_net1d(tmp_path / "none.pth")
    (tmp_path / "junk.pth").write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="not a readable"):
        load_net1d(tmp_path / "junk.pth")
    # official small weights into the full config: a clear mismatch error
    with pytest.raises(CheckpointError, match="does not match"):
        load_net1d(reference / "net1d_small_checkpoint.pth")


def test_project_checkpoint_round_trip_with_ddp_prefix(tmp_path, reference):
    cfg = json.loads((reference / "net1d_small_config.json").read_text())["config"]
    model, _ = load_net1d(reference / "net1d_small_checkpoint.pth", cfg)
    p = save_checkpoint(tmp_path / "t.pth", model, "net1d", cfg, LabelTable.ecgfounder(), {"note": "test"})
    again, ckpt = load_model(p)
    assert ckpt["meta"] == {"note": "test"} and LabelTable.from_list(ckpt["labels"]) == LabelTable.ecgfounder()
    x = torch.randn(2, 1, 5000)
    with torch.no_grad():
        assert torch.equal(model(x), again(x))
    torch.save({"state_dict": {"module." + k: v for k, v in model.state_dict().items()}}, tmp_path / "ddp.pth")
    ddp, _ = load_net1d(tmp_path / "ddp.pth", cfg)
    with torch.no_grad():
        assert torch.equal(model(x), ddp(x))
