"""Trains the iris classifier and exports it for `inferops model-server`.

    pip install scikit-learn && python examples/iris/train.py

scikit-learn ships the iris data set, so nothing is downloaded. The multinomial logistic
regression is exported as plain coefficients (model/model.json, a few hundred bytes): the
model server needs neither scikit-learn nor pickle to serve it.
"""

from __future__ import annotations

import argparse
import json
from pathlib import Path

from sklearn.datasets import load_iris
from sklearn.linear_model import LogisticRegression

FEATURES = ["input_1", "input_2", "input_3", "input_4"]


def train() -> dict[str, object]:
    iris = load_iris()
    model = LogisticRegression(max_iter=1000, random_state=0)
    model.fit(iris.data, iris.target)
    accuracy = float(model.score(iris.data, iris.target))
    return {
        "type": "linear-softmax",
        "features": FEATURES,
        "classes": [str(name) for name in iris.target_names],
        "coef": [[round(float(w), 8) for w in row] for row in model.coef_],
        "intercept": [round(float(b), 8) for b in model.intercept_],
        "trainingAccuracy": round(accuracy, 4),
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--output", type=Path,
                        default=Path(__file__).parent / "model" / "model.json")
    args = parser.parse_args()
    artifact = train()
    args.output.write_text(json.dumps(artifact, indent=2) + "\n", encoding="utf-8")
    print(f"wrote {args.output} (training accuracy {artifact['trainingAccuracy']})")


if __name__ == "__main__":
    main()
