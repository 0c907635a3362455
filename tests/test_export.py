"""SavedModel exports, checked the way TF Serving sees them: a clean process with only
tensorflow and tensorflow_text, saved_model_cli, the op list, the warm-up records."""

import json
import os
import signal
import socket
import subprocess
import sys
import textwrap
import time

import keras
import numpy as np
import pytest
import tensorflow as tf

from conftest import tiny_config
from tfbert import BertBackbone
from tfbert.export import ExportError, export_saved_model, read_allowlist, saved_model_op_types
from tfbert.tasks import BertClassifier
from tfbert.text import BertTokenizer

LABELS = ["neg", "neutral", "pos"]
SERVER_INPUTS = ["good movie", "", "the film was not very good , bad acting !" * 3, "x" * 100_000,
                 "hello world " * 300]


@pytest.fixture
def tokenizer(tiny_vocab_file):
    return BertTokenizer(tiny_vocab_file)


def _model(num_classes=3, task="classification", dtype=None, seed=0):
    keras.utils.set_random_seed(seed)
    return BertClassifier(BertBackbone(tiny_config(), dtype=dtype), num_classes=num_classes, task=task)


def _run_clean(script: str) -> dict:
    """Runs `script` in a fresh interpreter that imports only tensorflow and tensorflow_text."""
    prelude = "import json, sys\nimport numpy as np\nimport tensorflow as tf\nimport tensorflow_text  # noqa\n"
    epilogue = "\nassert not [m for m in sys.modules if m.startswith('tfbert')], 'imported tfbert'\n"
    result = subprocess.run([sys.executable, "-c", prelude + textwrap.dedent(script) + epilogue],
                            capture_output=True, text=True, timeout=300, env={**os.environ, "PYTHONPATH": ""},
                            cwd="/")
    assert result.returncode == 0, result.stderr[-4000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def test_every_weight_is_stored_once(tmp_path, tokenizer):
    # Keras' ExportArchive saved each weight twice (its keras.Variable and the tf.Variable inside it,
    # keras-team/keras#23553): twice the size on disk and in a server's memory
    model = _model()
    path = export_saved_model(model, tokenizer, str(tmp_path), label_names=LABELS)
    reader = tf.train.load_checkpoint(os.path.join(path, "variables", "variables"))
    stored = sum(int(np.prod(shape)) for name, shape in reader.get_variable_to_shape_map().items()
                 if reader.get_variable_to_dtype_map()[name].is_floating)
    assert stored == model.count_params()


def test_every_weight_is_stored_once_from_a_mirrored_model(tmp_path, tiny_vocab_file):
    # a float32 model trained under MirroredStrategy is exported as it is: its variables are MirroredVariables,
    # whose first replica's component is what the endpoints capture
    script = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
import numpy as np
from conftest import tiny_config
from tfbert import BertBackbone
from tfbert.tasks import BertClassifier
from tfbert.text import BertTokenizer
from tfbert.training import distribution
import tensorflow as tf
import tfbert.export as export
strategy = distribution.make_strategy("mirrored", devices="CPU:0,CPU:1")
with strategy.scope():
    model = BertClassifier(BertBackbone(tiny_config()), num_classes=3)
assert type(model.weights[0].value).__name__ == "MirroredVariable"
path = export.export_saved_model(model, BertTokenizer({tiny_vocab_file!r}), {str(tmp_path)!r}, label_names=["a", "b", "c"])
reader = tf.train.load_checkpoint(path + "/variables/variables")
stored = sum(int(np.prod(shape)) for name, shape in reader.get_variable_to_shape_map().items()
             if reader.get_variable_to_dtype_map()[name].is_floating)
served = tf.saved_model.load(path).signatures["encoded"]
ids = np.array([[2, 7, 8, 3]], "int32")
inputs = {{"input_ids": ids, "token_type_ids": np.zeros_like(ids), "attention_mask": np.ones_like(ids)}}
gap = np.abs(served(**{{k: tf.constant(v) for k, v in inputs.items()}})["logits"].numpy()
             - np.asarray(model(inputs))).max()
print("RESULT", stored, model.count_params(), gap)
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=300)
    assert result.returncode == 0, result.stderr[-3000:]
    _, stored, params, gap = result.stdout.strip().splitlines()[-1].split()
    assert int(stored) == int(params) and float(gap) < 1e-5


@pytest.mark.slow
def test_layout_versions_and_overwrite(tmp_path, tokenizer, caplog):
    model = _model()
    base = tmp_path / "export"
    first = export_saved_model(model, tokenizer, str(base), label_names=LABELS)
    assert first == str(base / "1")
    for name in ("saved_model.pb", "variables/variables.index", "assets/vocab.txt", "assets/labels.txt",
                 "assets.extra/tf_serving_warmup_requests", "assets.extra/tfbert_export.json"):
        assert (base / "1" / name).exists(), name
    assert (base / "1" / "assets" / "labels.txt").read_text().split() == LABELS
    assert export_saved_model(model, tokenizer, str(base), label_names=LABELS).endswith("/2")
    with pytest.raises(ExportError, match="version 2 already exists"):
        export_saved_model(model, tokenizer, str(base), version=2, label_names=LABELS)
    export_saved_model(_model(seed=1), tokenizer, str(base), version=2, label_names=LABELS, overwrite=True)
    assert sorted(os.listdir(base)) == ["1", "2"]  # no temporary folders left behind
    with pytest.raises(ExportError, match="2 label names for a model with 3 outputs"):
        export_saved_model(model, tokenizer, str(base), label_names=LABELS[:2])
    (tmp_path / "afile").write_text("not a folder")
    with pytest.raises(ExportError, match=f"{tmp_path / 'afile'}: is a file, not a directory"):
        export_saved_model(model, tokenizer, str(tmp_path / "afile"), label_names=LABELS)
    # TF Serving serves a base path's versions as one model: another task, or text pairs after single texts,
    # would reach the clients of the first (also when it replaces one version of several)
    for kwargs, shown in ((dict(task="multi_label"), "multi_label model on single texts"),
                          (dict(text_pair=True), "classification model on text pairs"),
                          (dict(task="multi_label", version=2, overwrite=True), "multi_label model on single texts")):
        with pytest.raises(ExportError, match=rf"{base}: version \d is a classification model on single texts, and "
                                              rf"this is a {shown}: TF Serving serves the versions"):
            export_saved_model(model, tokenizer, str(base), label_names=LABELS, **kwargs)
    assert sorted(os.listdir(base)) == ["1", "2"]
    assert "answers with the labels" not in caplog.text  # the same labels so far
    # other labels (a class added, or another order): said, as the clients of label_id get other answers
    export_saved_model(model, tokenizer, str(base), version=2, overwrite=True, label_names=LABELS[::-1])
    assert (f"{base}: version 1 answers with the labels neg, neutral, pos, this version with pos, neutral, neg: a "
            "client that reads label_id or probabilities by position gets other labels from it") in caplog.text
    # signatures of a caller's own, without a task named: nothing to compare, written beside the others
    def own_signature(archive, serving_model, tokenizer, max_seq_length):
        archive.add_endpoint("serving_default", lambda text: {"characters": tf.strings.length(text)},
                             input_signature=[tf.TensorSpec([None], tf.string, name="text")])
    assert export_saved_model(model, tokenizer, str(base), signatures=own_signature).endswith("/3")
    # a length the model cannot take is refused before the base folder is made
    with pytest.raises(ExportError, match=r"^max_seq_length 999 exceeds the model's max_position_embeddings"):
        export_saved_model(model, tokenizer, str(tmp_path / "new"), label_names=LABELS, max_seq_length=999)
    assert not (tmp_path / "new").exists()


def test_overwrite_swaps_the_version_in_one_step(tmp_path, tokenizer, monkeypatch):
    # TF Serving polls the base folder: a version that is briefly absent would be unloaded
    import tfbert.export as export

    base = tmp_path / "export"
    from tfbert.serving import LocalPredictor

    export_saved_model(_model(), tokenizer, str(base), label_names=LABELS)
    before = LocalPredictor(str(base / "1")).predict(["good film"])[0]["probabilities"]
    moves = []
    rename = os.rename
    monkeypatch.setattr(os, "rename", lambda a, b: (moves.append((a, b)), rename(a, b))[1])
    export_saved_model(_model(seed=1), tokenizer, str(base), version=1, label_names=LABELS, overwrite=True)
    assert not [a for a, _ in moves if os.path.basename(a) == "1"]  # the version was never moved away
    assert sorted(os.listdir(base)) == ["1"]  # the old one, swapped out, is gone
    assert LocalPredictor(str(base / "1")).predict(["good film"])[0]["probabilities"] != before  # the new model
    # where the system has no atomic exchange, two renames (the old behaviour) still replace it
    monkeypatch.setattr(export.fileio, "exchange_paths", lambda a, b: False)
    export_saved_model(_model(), tokenizer, str(base), version=1, label_names=LABELS, overwrite=True)
    assert sorted(os.listdir(base)) == ["1"] and [a for a, _ in moves if os.path.basename(a) == "1"]


def test_warmup_records_are_prediction_logs(tmp_path, tokenizer):
    from tensorflow_serving.apis import prediction_log_pb2

    path = export_saved_model(_model(), tokenizer, str(tmp_path), label_names=LABELS)
    records = list(tf.data.TFRecordDataset(f"{path}/assets.extra/tf_serving_warmup_requests").as_numpy_iterator())
    assert len(records) == 2
    for record in records:
        log = prediction_log_pb2.PredictionLog.FromString(record)
        request = log.predict_log.request
        assert request.model_spec.signature_name == "serving_default"
        assert tf.make_ndarray(request.inputs["text"]).dtype == object


def _check_ops(path):
    ops = saved_model_op_types(path)
    assert "WordpieceTokenizeWithOffsets" in ops
    assert not ops - read_allowlist(), f"ops outside serving_ops_allowlist.txt: {sorted(ops - read_allowlist())}"


def test_only_ops_stock_tf_serving_ships(tmp_path, tokenizer):
    # (the pair, multi-label and regression exports are checked in test_pair_multilabel_and_regression_signatures)
    model = _model()
    path = export_saved_model(model, tokenizer, str(tmp_path / "classification"))
    _check_ops(path)
    # The serving graph skips padding in its dense layers (the tokens gathered, put back with ScatterNd);
    # the float32 model, exported as it is, is left as it was.
    assert "ScatterNd" in saved_model_op_types(path) and not model.backbone.skip_padding
    model.backbone.skip_padding = True  # a model that trained skipping padding, exported without (QA's case)
    kept = export_saved_model(model, tokenizer, str(tmp_path / "kept"), skip_padding=False)
    assert "ScatterNd" not in saved_model_op_types(kept) and model.backbone.skip_padding
    allowed = read_allowlist()
    # The allow-list is honest: everything but the listed tf_text ops is registered by plain TensorFlow.
    core = sorted(op for op in allowed if op not in {"CaseFoldUTF8", "NormalizeUTF8", "RegexSplitWithOffsets",
                                                      "WordpieceTokenizeWithOffsets"})
    script = f"""
import json
import tensorflow as tf
from tensorflow.python.framework import op_def_registry
print(json.dumps([op for op in {core!r} if op_def_registry.get(op) is None]))
"""
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=120)
    assert json.loads(result.stdout.strip().splitlines()[-1]) == []


@pytest.mark.slow
def test_clean_process_matches_keras_on_every_signature(tmp_path, tokenizer):
    model = _model(dtype="mixed_bfloat16")  # exported as a float32 graph
    path = export_saved_model(model, tokenizer, str(tmp_path), label_names=LABELS, max_seq_length=48)
    invalid = [b"good \xff\xfe movie", b"\xc3"]
    served = _run_clean(f"""
        m = tf.saved_model.load({path!r})
        texts = {SERVER_INPUTS!r}
        out = {{}}
        d = m.signatures["serving_default"](text=tf.constant(texts))
        out["probabilities"] = d["probabilities"].numpy().tolist()
        out["label"] = [x.decode() for x in d["label"].numpy()]
        out["label_id"] = d["label_id"].numpy().tolist()
        out["invalid"] = m.signatures["serving_default"](text=tf.constant({invalid!r}))["probabilities"].numpy().tolist()
        big = m.signatures["serving_default"](text=tf.constant(["good movie"] * 64))["probabilities"]
        out["batch64"] = big.shape.as_list()
        one = m.signatures["serving_default"](text=tf.constant(["good movie"]))["probabilities"]
        out["batch1"] = one.numpy().tolist()
        ids = [[2, 10, 11, 3], [2, 10, 3, 0]]
        mask = [[1, 1, 1, 1], [1, 1, 1, 0]]
        for name, dtype in (("encoded", tf.int32), ("encoded_int64", tf.int64)):
            e = m.signatures[name](input_ids=tf.constant(ids, dtype), token_type_ids=tf.zeros([2, 4], dtype),
                                   attention_mask=tf.constant(mask, dtype))
            out[name] = e["probabilities"].numpy().tolist()
        examples = [tf.train.Example(features=tf.train.Features(feature={{"text": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[t.encode()]))}})).SerializeToString() for t in texts[:2]]
        c = m.signatures["classify"](inputs=tf.constant(examples))
        out["classes"] = [[x.decode() for x in row] for row in c["classes"].numpy()]
        out["scores"] = c["scores"].numpy().tolist()
        print(json.dumps(out))
    """)
    reference = model.__class__.from_config({**model.get_config(), "backbone": {
        **model.get_config()["backbone"], "config": {**model.get_config()["backbone"]["config"], "dtype": None}}})
    reference.set_weights(model.get_weights())
    features = tokenizer(SERVER_INPUTS, max_length=48)
    expected = tf.nn.softmax(reference(features)).numpy()
    assert np.abs(np.array(served["probabilities"]) - expected).max() < 1e-5
    assert served["label"] == [LABELS[i] for i in expected.argmax(-1)] and served["label_id"] == expected.argmax(-1).tolist()
    valid = tf.nn.softmax(reference(tokenizer(["good  movie", ""], max_length=48))).numpy()
    assert np.abs(np.array(served["invalid"]) - valid).max() < 1e-5  # invalid bytes are dropped
    assert served["batch64"] == [64, 3]
    assert np.abs(np.array(served["batch1"])[0] - expected[0]).max() < 1e-5
    ids = {"input_ids": np.array([[2, 10, 11, 3], [2, 10, 3, 0]], "int32"), "token_type_ids": np.zeros((2, 4), "int32"),
           "attention_mask": np.array([[1, 1, 1, 1], [1, 1, 1, 0]], "int32")}
    encoded = tf.nn.softmax(reference(ids)).numpy()
    for name in ("encoded", "encoded_int64"):
        assert np.abs(np.array(served[name]) - encoded).max() < 1e-5
    assert served["classes"] == [LABELS, LABELS]
    assert np.abs(np.array(served["scores"]) - expected[:2]).max() < 1e-5


@pytest.mark.slow
def test_pair_multilabel_and_regression_signatures(tmp_path, tokenizer):
    pair_model = _model(3, "multi_label")
    pair_path = export_saved_model(pair_model, tokenizer, str(tmp_path / "ml"), task="multi_label", text_pair=True,
                                   label_names=LABELS, threshold=0.5)
    reg_model = _model(1, "regression")
    reg_path = export_saved_model(reg_model, tokenizer, str(tmp_path / "reg"), task="regression")
    _check_ops(pair_path)
    _check_ops(reg_path)
    served = _run_clean(f"""
        ml = tf.saved_model.load({pair_path!r}).signatures["serving_default"]
        out = ml(text=tf.constant(["good movie", "bad"]), text_pair=tf.constant(["the film", "a very long one " * 9]))
        loaded = tf.saved_model.load({reg_path!r})
        reg = loaded.signatures["serving_default"](text=tf.constant(["good", "bad film"]))
        examples = [tf.train.Example(features=tf.train.Features(feature={{"text": tf.train.Feature(
            bytes_list=tf.train.BytesList(value=[t]))}})).SerializeToString() for t in (b"good", b"bad film")]
        regress = loaded.signatures["regress"](inputs=tf.constant(examples))["outputs"]
        print(json.dumps({{"probabilities": out["probabilities"].numpy().tolist(),
                           "predicted": out["predicted"].numpy().tolist(), "score": reg["score"].numpy().tolist(),
                           "regress": regress.numpy().tolist()}}))
    """)
    probabilities = tf.sigmoid(pair_model(tokenizer(["good movie", "bad"], ["the film", "a very long one " * 9],
                                                    max_length=128))).numpy()
    assert np.abs(np.array(served["probabilities"]) - probabilities).max() < 1e-5
    assert served["predicted"] == (probabilities > 0.5).tolist()
    score = reg_model(tokenizer(["good", "bad film"])).numpy()[:, 0]
    assert np.abs(np.array(served["score"]) - score).max() < 1e-5
    assert np.abs(np.array(served["regress"]) - score).max() < 1e-5


@pytest.mark.slow
def test_saved_model_cli_show_and_run(tmp_path, tokenizer):
    path = export_saved_model(_model(), tokenizer, str(tmp_path), label_names=LABELS)
    show = subprocess.run(["saved_model_cli", "show", "--all", "--dir", path], capture_output=True, text=True,
                          timeout=300)
    assert show.returncode == 0, show.stderr[-2000:]
    assert "signature_def['classify']" in show.stdout and "tensorflow/serving/classify" in show.stdout
    assert "inputs['text'] tensor_info" in show.stdout
    # Stock saved_model_cli does not register TF Text's ops (TF Serving does); our wrapper does.
    run = subprocess.run([sys.executable, "-m", "tfbert.saved_model_cli", "run", "--dir", path, "--tag_set", "serve", "--signature_def",
                          "serving_default", "--input_exprs", "text=['good movie', 'bad film']"],
                         capture_output=True, text=True, timeout=300)
    assert run.returncode == 0, run.stderr[-2000:]
    assert "probabilities" in run.stdout and "label" in run.stdout


@pytest.mark.slow
def test_killed_export_leaves_no_version(tmp_path, tiny_vocab_file):
    """kill -9 while the SavedModel is being written: no numbered folder appears, and the next export
    removes the killed one's hidden folder (its process is gone), not a running export's or another
    machine's."""
    base = tmp_path / "export"
    script = f"""
import sys
sys.path.insert(0, {os.path.dirname(__file__)!r})
from conftest import tiny_config
from tfbert import BertBackbone
from tfbert.tasks import BertClassifier
from tfbert.text import BertTokenizer
import tfbert.export as export
original = export._set_example_methods
def slow_finish(path):
    original(path)
    print("WRITTEN", flush=True)
    import time; time.sleep(60)  # killed here: the SavedModel is written, the rename has not happened
export._set_example_methods = slow_finish
model = BertClassifier(BertBackbone(tiny_config()), num_classes=3)
export.export_saved_model(model, BertTokenizer({tiny_vocab_file!r}), {str(base)!r})
"""
    process = subprocess.Popen([sys.executable, "-c", script], stdout=subprocess.PIPE, text=True)
    deadline = time.time() + 240
    line = ""
    while time.time() < deadline and "WRITTEN" not in line:
        line = process.stdout.readline()
        if not line and process.poll() is not None:
            break
    assert "WRITTEN" in line, "export did not reach the write"
    os.kill(process.pid, signal.SIGKILL)
    process.wait()
    leftovers = os.listdir(base)
    assert leftovers and all(name.startswith(".") and ".tmp-" in name for name in leftovers)
    assert not [n for n in leftovers if n.isdigit()]
    assert all(name.endswith(f"-pid{process.pid}@{socket.gethostname()}") for name in leftovers)

    running = f".tmp-0-0123abcd-pid{os.getpid()}@{socket.gethostname()}"  # this process: an export running
    elsewhere = f".tmp-0-0123abcd-pid{process.pid}@another-host.example"  # its own machine's to clean up
    for name in (running, elsewhere):
        (base / name).mkdir()
    written = export_saved_model(_model(), BertTokenizer(tiny_vocab_file), str(base))
    assert sorted(os.listdir(base)) == sorted([running, elsewhere, os.path.basename(written)])


def test_lora_adapters_are_merged_into_a_float32_export(tmp_path, tokenizer):
    model = _model(dtype="mixed_bfloat16")
    rng = np.random.default_rng(0)
    for layer in model._flatten_layers():
        if isinstance(layer, keras.layers.Dense) and layer.name in ("query", "value"):
            layer.enable_lora(4)
            layer.lora_kernel_b.assign(rng.normal(size=layer.lora_kernel_b.shape) * 0.2)
    from tfbert.export import float32_copy

    merged = float32_copy(model)
    assert not [w for w in merged.weights if "lora" in w.path] and merged.compute_dtype == "float32"
    features = tokenizer(["good movie", "the film was bad"])
    plain = _model()  # same seed, no adapters: the adapters must change the output
    hidden = merged.backbone(features)["sequence_output"].numpy()
    assert np.abs(hidden - plain.backbone(features)["sequence_output"].numpy()).max() > 1e-2
    path = export_saved_model(model, tokenizer, str(tmp_path), label_names=LABELS)
    served = tf.saved_model.load(path).signatures["serving_default"](text=tf.constant(["good movie", "the film was bad"]))
    expected = tf.nn.softmax(merged(features)).numpy()
    assert np.abs(served["probabilities"].numpy() - expected).max() < 1e-5
    assert not [v for v in tf.train.list_variables(f"{path}/variables/variables") if "lora" in v[0]]


def test_an_export_beaten_to_its_version_number_takes_the_next_one(tmp_path, caplog):
    """Two exports into one base path at once (export.py twice, no --version): the one that finishes second
    found its number taken by the other's whole folder; it takes the next free number instead of failing
    after its whole export. A version asked for is not renumbered, and is replaced only with overwrite."""
    import logging

    from tfbert.export import _replace_dir

    base = tmp_path / "saved_model"

    def written(name):  # an export's finished hidden folder
        folder = base / f".{name}.tmp"
        folder.mkdir(parents=True)
        (folder / "saved_model.pb").write_text(name)
        return str(folder)

    (base / "1").mkdir(parents=True)
    (base / "1" / "saved_model.pb").write_text("the other export's")
    caplog.set_level(logging.WARNING, logger="tfbert")
    assert _replace_dir(written("ours"), str(base / "1"), overwrite=False, numbered=True) == str(base / "2")
    assert (base / "2" / "saved_model.pb").read_text() == "ours"
    assert (base / "1" / "saved_model.pb").read_text() == "the other export's"
    assert f"{base / '1'}: written by another export meanwhile; this one is version 2" in caplog.text
    with pytest.raises(ExportError, match=r"2: created by another export while this one was writing"):
        _replace_dir(written("asked for 2"), str(base / "2"), overwrite=False)
    assert _replace_dir(written("replacing 2"), str(base / "2"), overwrite=True) == str(base / "2")
    assert (base / "2" / "saved_model.pb").read_text() == "replacing 2"
    assert sorted(os.listdir(base)) == [".asked for 2.tmp", "1", "2"]  # (export_saved_model removes its own)
