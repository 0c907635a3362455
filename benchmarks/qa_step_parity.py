"""Where does the XQuAD gap come from? Two checks of `train_qa.py`'s pieces against transformers' PyTorch recipe
(`qa_xquad.py`), without the cost of two full runs (run from benchmarks/, or with it on the path):

1. Features: tfbert's in-graph windows and start/end labels (`encode_questions`) vs the fast tokenizer's
   `only_second` overflow and run_qa.py's labelling, on the XQuAD-en train split: windows per question,
   token ids and labels, counted.
2. Training steps: MiniLM with one span head (transformers' initialisation, saved once and loaded by both),
   the same batches of the same windows in the same order, dropout off; tfbert (`create_optimizer`) vs
   PyTorch AdamW with `get_linear_schedule_with_warmup`. Prints each step's loss from both. With `dropout`
   (0.1 in MiniLM's config) the two draw different masks, so single steps differ, but the running mean
   of the loss shows whether either framework's dropout slows training down.
3. Evaluation: both trained models scored on the validation split by tfbert's evaluation (in-graph windows,
   exact best spans) and by run_qa.py's post-processing, crosswise.

    pip install --use-pep517 -e ".[bench]"
    python benchmarks/qa_step_parity.py [steps] [dropout]     # default 30 steps, dropout off
"""
import os
import sys
import tempfile

import numpy as np
import torch
import transformers

import accuracy_pair
import qa_xquad
from tfbert.checkpoints import resolve
from tfbert.tasks import BertQuestionAnswerer
from tfbert.tasks.question_answering import QAData, QuestionAnsweringTask, encode_questions
from tfbert.text import BertTokenizer
from tfbert.training.optimization import create_optimizer
from tfbert.training.run_config import QARunConfig

STEPS = int(sys.argv[1]) if len(sys.argv) > 1 else 30
DROPOUT = sys.argv[2:3] == ["dropout"]
LR, BATCH, SEQ, STRIDE, QUERY, EPS = 1e-4, 16, 384, 128, 64, 1e-8
splits = qa_xquad.xquad_splits(42)
train = splits["train"]
model_dir = resolve("minilm-l6")
fast = transformers.BertTokenizerFast.from_pretrained(model_dir)
tokenizer = BertTokenizer.from_pretrained(model_dir)

# 1. Features.
reference = qa_xquad.torch_encode(fast, train)
ours = encode_questions(train, tokenizer, SEQ, QUERY, STRIDE)
print(f"windows: tfbert {len(ours.input_ids)}, transformers {len(reference)}")
same_ids = same_labels = 0
for k, feature in enumerate(reference[:len(ours.input_ids)]):
    same_ids += (ours.example[k] == feature["example"] and list(ours.input_ids[k]) == feature["input_ids"]
                 and list(ours.token_type_ids[k]) == feature["token_type_ids"])
    same_labels += tuple(ours.labels[k]) == (feature["start_positions"], feature["end_positions"])
print(f"identical windows: {same_ids}, identical labels: {same_labels}, "
      f"labels at [CLS]: tfbert {int(np.sum(ours.labels[:, 0] == 0))}, "
      f"transformers {sum(f['start_positions'] == 0 for f in reference)}", flush=True)

# 2. Steps.
torch.manual_seed(0)
hf = transformers.BertForQuestionAnswering.from_pretrained(model_dir)
init_dir = tempfile.mkdtemp(prefix="tfbert-qa-step-parity-")
hf.save_pretrained(init_dir, safe_serialization=True)
off = {} if DROPOUT else dict(hidden_dropout_prob=0.0, attention_probs_dropout_prob=0.0)
hf.config.update(off)  # read by the layers' forward: dropout off in both unless asked for
for module in hf.modules():
    if isinstance(module, torch.nn.Dropout) and not DROPOUT:
        module.p = 0.0
model = BertQuestionAnswerer.from_pretrained(init_dir, **off)
total = 3 * -(-len(reference) // BATCH)
optimizer = create_optimizer(model, learning_rate=LR, total_steps=total, warmup_ratio=0.1, weight_decay=0.01,
                             epsilon=EPS)
model.compile(optimizer=optimizer, loss=model.default_loss())
torch_optimizer, schedule = accuracy_pair.torch_adamw(
    hf, dict(epochs=3, batch_size=BATCH, weight_decay=0.01, learning_rate=LR, adam_epsilon=EPS, warmup_ratio=0.1),
    len(reference))
order = np.concatenate([np.random.default_rng(epoch).permutation(len(reference)) for epoch in range(3)])
hf.train()
means = {"tfbert": [], "pytorch": []}
for step in range(STEPS):
    batch = qa_xquad.torch_batch(fast, [reference[i] for i in order[step * BATCH:(step + 1) * BATCH]], labels=True)
    y = np.stack([batch.pop("start_positions").numpy(), batch.pop("end_positions").numpy()], axis=1)
    ours_loss = float(model.train_on_batch({k: v.numpy().astype(np.int32) for k, v in batch.items()}, y))
    out = hf(**batch, start_positions=torch.from_numpy(y[:, 0]), end_positions=torch.from_numpy(y[:, 1]))
    means["tfbert"].append(ours_loss)
    means["pytorch"].append(accuracy_pair.torch_step(hf, out.loss, torch_optimizer, schedule))
    print(f"step {step:3d}  tfbert {ours_loss:.5f}  pytorch {means['pytorch'][-1]:.5f}  "
          f"mean of the last 10: tfbert {np.mean(means['tfbert'][-10:]):.4f}  "
          f"pytorch {np.mean(means['pytorch'][-10:]):.4f}", flush=True)

# 3. The two models after these steps, each scored on the validation split by both implementations'
# evaluation (tfbert: windows in the graph, exact best spans; transformers: run_qa.py's post-processing).
config = QARunConfig(max_seq_length=SEQ, doc_stride=STRIDE, max_query_length=QUERY)
data = QAData(train, splits["validation"], splits["test"], None, "XQuAD-en")
task = QuestionAnsweringTask()
dataset = task.make_dataset(data, "validation", tokenizer, config, training=False)
dev_features = qa_xquad.torch_encode(fast, splits["validation"])
ours_dir, torch_dir = os.path.join(init_dir, "tfbert"), os.path.join(init_dir, "torch")
model.save_pretrained(ours_dir)
hf.save_pretrained(torch_dir, safe_serialization=True)
for name, directory in (("tfbert-trained", ours_dir), ("pytorch-trained", torch_dir)):
    by_ours = task.evaluate(BertQuestionAnswerer.from_pretrained(directory), dataset, data, "validation",
                            tokenizer, config)
    by_torch = qa_xquad.torch_predict(transformers.BertForQuestionAnswering.from_pretrained(directory), fast,
                                      splits["validation"], dev_features)
    print(f"{name} model, dev EM/F1: tfbert evaluation {by_ours['exact_match']:.2f}/{by_ours['f1']:.2f}, "
          f"run_qa.py evaluation {by_torch['exact_match']:.2f}/{by_torch['f1']:.2f}", flush=True)
