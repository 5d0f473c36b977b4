"""The model card validator answers any edit of a card with BundleError or acceptance, never another exception."""
import copy
import json

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from edge_sdk.bundle import CARD_NAME, validate_card
from edge_sdk.errors import BundleError

JSON_VALUES = st.recursive(
    st.none() | st.booleans() | st.integers(-10**6, 10**6) | st.floats(allow_nan=True, allow_infinity=True)
    | st.text(max_size=8),
    lambda children: st.lists(children, max_size=3) | st.dictionaries(st.text(max_size=5), children, max_size=3),
    max_leaves=6)


def _paths(obj, prefix=()):
    yield prefix
    if isinstance(obj, dict):
        for k, v in obj.items():
            yield from _paths(v, prefix + (k,))
    elif isinstance(obj, list):
        for i, v in enumerate(obj):
            yield from _paths(v, prefix + (i,))


def _card(bundle_dir):
    return json.loads((bundle_dir / CARD_NAME).read_text())


@settings(max_examples=300, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
@given(data=st.data())
def test_any_edit_of_a_card_is_accepted_or_a_bundle_error(bundle_dir, data):
    card = _card(bundle_dir)
    paths = [p for p in _paths(card) if p]
    shallow = [p for p in paths if len(p) <= 2 and p[0] not in ("fidelity", "student", "teacher", "recipe")]
    path = data.draw(st.sampled_from(shallow) | st.sampled_from(paths))  # what validation reads, more often
    action = data.draw(st.sampled_from(["replace", "delete"]))
    edited = copy.deepcopy(card)
    parent = edited
    for k in path[:-1]:
        parent = parent[k]
    if action == "delete":
        del parent[path[-1]]
    else:
        parent[path[-1]] = data.draw(JSON_VALUES)
    try:
        validate_card(edited)
    except BundleError:
        pass


def test_the_committed_card_validates(bundle_dir):
    assert validate_card(_card(bundle_dir))["version"] == 2


def test_a_card_whose_labels_were_reordered_is_refused_by_the_tflite_labels(bundle_dir, tmp_path):
    """Swapping two labels (and dropping the record rule, whose weights would tell) used to stream a normal
    record as ATRIAL FIBRILLATION: the TFLite file's labels.txt names the outputs in order."""
    import shutil

    import pytest

    from edge_sdk.bundle import load_bundle

    copy_dir = tmp_path / "b"
    shutil.copytree(bundle_dir, copy_dir)
    card = _card(copy_dir)
    card["labels"][0], card["labels"][1] = card["labels"][1], card["labels"][0]
    del card["record_rule"]
    (copy_dir / CARD_NAME).write_text(json.dumps(card))
    with pytest.raises(BundleError, match="names its outputs .*NORMAL SINUS RHYTHM"):
        load_bundle(copy_dir)
