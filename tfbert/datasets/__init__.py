"""Data sets shipped inside the package, with their licences: the default data of the pipelines.

- `wnut17/`: WNUT-17 Emerging and Rare Entities (NER, 6 types, IOB2; CC BY 4.0, see its LICENSE.txt).
- `xquad_en/`: XQuAD English (extractive QA, 1,190 SQuAD v1.1 questions; CC BY-SA 4.0, see its LICENSE.txt).
"""

import os

DATASETS_DIR = os.path.dirname(__file__)


def path(name: str, *parts: str) -> str:
    """The path of a shipped data set's folder or file, e.g. `path("wnut17", "train.conll")`."""
    return os.path.join(DATASETS_DIR, name, *parts)
