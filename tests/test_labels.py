"""The label table: names, ECGFounder vocabulary indices, thresholds, subsets, dataset label mapping."""
import numpy as np
import pytest
import torch

from distill.checkpoint import read_checkpoint
from distill.labels import CINC2017_LABEL_MAP, checkpoint_label_table, hard_targets, parse_label_map
from edge_sdk.datasets import CINC2017_CLASSES
from edge_sdk.errors import LabelError
from edge_sdk.labels import LabelTable, ecgfounder_labels, parse_label_list


def test_shipped_vocabulary_is_ecgfounder_tasks_txt(reference):
    lines = [l.strip() for l in (reference / "tasks.txt").read_text().splitlines() if l.strip()]
    assert list(ecgfounder_labels()) == lines and len(lines) == 150


def test_official_checkpoint_gets_tasks_txt_names(reference):
    ckpt = read_checkpoint(reference / "net1d_small_checkpoint.pth")
    table = checkpoint_label_table(ckpt, 150)
    assert table.names[5] == "ATRIAL FIBRILLATION" and table.labels[5].vocab_index == 5
    assert table.activation == "sigmoid" and len(table) == 150
    with pytest.raises(LabelError, match="--teacher-labels"):
        checkpoint_label_table({"state_dict": {}}, 7)


def test_subset_keeps_given_order_and_vocab_indices():
    sub = LabelTable.ecgfounder().subset(["SINUS RHYTHM", "ATRIAL FIBRILLATION"])
    assert sub.names == ["SINUS RHYTHM", "ATRIAL FIBRILLATION"]
    assert [l.vocab_index for l in sub] == [3, 5]
    assert LabelTable.ecgfounder().indices(sub.names) == [3, 5]


def test_unknown_name_lists_close_matches():
    with pytest.raises(LabelError, match="close matches.*ATRIAL FIBRILLATION"):
        LabelTable.ecgfounder().subset(["ATRIAL FIBRILATION"])


def test_label_list_from_string_and_file(tmp_path):
    assert parse_label_list(" A , B,,") == ["A", "B"]
    f = tmp_path / "labels.txt"
    f.write_text("ATRIAL FIBRILLATION\n# comment\nSINUS RHYTHM  # the other one\n\n")
    assert parse_label_list(f"@{f}") == ["ATRIAL FIBRILLATION", "SINUS RHYTHM"]
    f.write_text("ATRIAL FIBRILLATION\nSINUS RHYTHM\n", encoding="utf-8-sig")  # a BOM (Notepad)
    assert parse_label_list(f"@{f}") == ["ATRIAL FIBRILLATION", "SINUS RHYTHM"]
    with pytest.raises(LabelError, match="more than once"):
        parse_label_list("A,A")
    with pytest.raises(LabelError, match="not found"):
        parse_label_list(f"@{tmp_path / 'missing.txt'}")


@pytest.mark.parametrize("item, match", [
    ({"threshold": 1.5}, "threshold"), ({"threshold": float("nan")}, "threshold"), ({"threshold": "0.5"}, "threshold"),
    ({"vocab_index": 4}, "SINUS BRADYCARDIA"), ({"vocab_index": 999}, "vocab_index"),
    ({"activation": "relu"}, "activation"), ({"threshold_source": "guess"}, "threshold_source"),
    ({"name": ""}, "name")])
def test_table_rejects_bad_entries(item, match):
    good = LabelTable.ecgfounder().subset(["ATRIAL FIBRILLATION", "SINUS RHYTHM"]).to_list()
    good[0].update(item)
    with pytest.raises(LabelError, match=match):
        LabelTable.from_list(good)


def test_table_rejects_duplicates_and_mixed_activations():
    items = LabelTable.from_names(["A", "B"], "softmax").to_list()
    with pytest.raises(LabelError, match="duplicate"):
        LabelTable.from_list([items[0], dict(items[0])])
    items[1]["activation"] = "sigmoid"
    with pytest.raises(LabelError, match="share one activation"):
        LabelTable.from_list(items)


def test_thresholds_travel_with_their_source():
    t = LabelTable.from_names(["NORMAL SINUS RHYTHM", "ATRIAL FIBRILLATION"], "softmax")
    t2 = t.with_thresholds({"ATRIAL FIBRILLATION": 0.31}, "validation")
    assert t2.thresholds == {"NORMAL SINUS RHYTHM": 0.5, "ATRIAL FIBRILLATION": 0.31}
    assert [l.threshold_source for l in t2] == ["default", "validation"]
    assert LabelTable.from_list(t2.to_list()) == t2


def test_challenge_labels_map_by_name_onto_a_subset_student():
    student = LabelTable.ecgfounder().subset(["ATRIAL FIBRILLATION", "NORMAL SINUS RHYTHM"])
    y = np.array([0, 1, 1, -1, 0])  # N A A unlabeled N
    targets, supervised = hard_targets(y, CINC2017_CLASSES, CINC2017_LABEL_MAP, student)
    assert targets.tolist() == [1, 0, 0, -1, 1] and supervised == [0, 1]
    with pytest.raises(LabelError, match="'O' -> 'OTHER RHYTHM'.*--unmapped-labels"):
        hard_targets(np.array([0, 2]), CINC2017_CLASSES, CINC2017_LABEL_MAP, student)
    targets, _ = hard_targets(np.array([0, 2, 3]), CINC2017_CLASSES, CINC2017_LABEL_MAP, student, "unlabeled")
    assert targets.tolist() == [1, -1, -1]


def test_user_label_map():
    assert parse_label_map("AF=ATRIAL FIBRILLATION; N = SINUS RHYTHM") == {"AF": "ATRIAL FIBRILLATION",
                                                                           "N": "SINUS RHYTHM"}
    with pytest.raises(LabelError, match="DATASET_LABEL=OUTPUT"):
        parse_label_map("AF")


def test_sigmoid_hard_loss_only_touches_supervised_outputs():
    from distill.distiller import hard_loss

    logits = torch.zeros(2, 4, requires_grad=True)
    hard_loss(logits, torch.tensor([1, 2]), "sigmoid", torch.tensor([1, 2])).backward()
    assert logits.grad[:, [0, 3]].abs().sum() == 0 and logits.grad[:, [1, 2]].abs().sum() > 0
