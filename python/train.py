"""Trains and registers the demo model family in MLflow (idempotent: skips versions that exist).

Dataset: scikit-learn's breast cancer data (binary classification, ships with the package).
A fixed split keeps 30% as the holdout, written to <out>/holdout.csv for validation and traffic
replay (features, `label`, and an `entity_id`).

  v1  champion: logistic regression on 8 features
  v2  a genuine improvement: logistic regression on all features (better AUC and log loss)
  v3  a regression: slightly worse offline (logistic regression on 12 features) and slow and
      erroring under load through the explicit fault knob in its artifacts (above 5 calls/s:
      latency_ms=25, error_rate=0.15; see promote_model.py)
  v4  an incompatible input signature: expects a feature the traffic does not carry

Each version is logged with its signature, its holdout evaluation (auc, log_loss, accuracy) as run
metrics, and the tag `promote.story`.
"""

import argparse
import json
import os
import sys
import tempfile

import joblib
import mlflow
import numpy as np
import pandas as pd
from mlflow.models import infer_signature
from mlflow.tracking import MlflowClient
from sklearn.datasets import load_breast_cancer
from sklearn.linear_model import LogisticRegression
from sklearn.metrics import accuracy_score, log_loss, roc_auc_score
from sklearn.model_selection import train_test_split
from sklearn.pipeline import make_pipeline
from sklearn.preprocessing import StandardScaler

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from promote_model import PromoteModel  # noqa: E402


def dataset():
    data = load_breast_cancer(as_frame=True)
    X = data.data.rename(columns=lambda c: c.replace(" ", "_"))
    # Positive class = malignant (0 in the raw data), so a high score means "flag it".
    y = (data.target == 0).astype(int)
    X_train, X_hold, y_train, y_hold = train_test_split(X, y, test_size=0.3, random_state=7, stratify=y)
    return X_train, X_hold, y_train, y_hold


def versions(X):
    cols = list(X.columns)
    return [
        ("v1", "champion: logistic regression on 8 features", cols[:8],
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=500, C=0.05)), {}),
        ("v2", "improvement: logistic regression on all features", cols,
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.5)), {}),
        ("v3", "regression: fewer features, slow and erroring under load", cols[:12],
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000, C=0.1)),
         {"latency_ms": 25, "error_rate": 0.15, "load_threshold_rps": 5}),
        ("v4", "incompatible signature: expects device_fingerprint", cols[:8] + ["device_fingerprint"],
         make_pipeline(StandardScaler(), LogisticRegression(max_iter=500)), {}),
    ]


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--model", default="fraud-detector")
    parser.add_argument("--out", required=True, help="folder for holdout.csv")
    args = parser.parse_args()

    client = MlflowClient()
    X_train, X_hold, y_train, y_hold = dataset()
    os.makedirs(args.out, exist_ok=True)
    holdout = X_hold.copy()
    holdout["label"] = y_hold.values
    holdout.insert(0, "entity_id", [f"e{i}" for i in X_hold.index])
    holdout.to_csv(os.path.join(args.out, "holdout.csv"), index=False)

    existing = {}
    try:
        for mv in client.search_model_versions(f"name='{args.model}'"):
            existing[mv.tags.get("promote.version_label")] = mv.version
    except mlflow.exceptions.MlflowException:
        pass

    rng = np.random.default_rng(7)
    for label, story, features, estimator, fault in versions(X_train):
        if label in existing:
            print(f"{args.model} {label}: already registered as version {existing[label]}")
            continue
        Xt = X_train.reindex(columns=features)
        Xh = X_hold.reindex(columns=features)
        if "device_fingerprint" in features:
            Xt = Xt.assign(device_fingerprint=rng.normal(size=len(Xt)))
            Xh = Xh.assign(device_fingerprint=rng.normal(size=len(Xh)))
        estimator.fit(Xt, y_train)
        scores = estimator.predict_proba(Xh)[:, 1]
        metrics = {
            "auc": float(roc_auc_score(y_hold, scores)),
            "log_loss": float(log_loss(y_hold, scores)),
            "accuracy": float(accuracy_score(y_hold, scores >= 0.5)),
        }
        with tempfile.TemporaryDirectory() as tmp, mlflow.start_run(run_name=f"{args.model}-{label}"):
            joblib.dump(estimator, os.path.join(tmp, "estimator.joblib"))
            with open(os.path.join(tmp, "fault.json"), "w", encoding="utf-8") as f:
                json.dump(fault, f)
            signature = infer_signature(Xh, scores)
            mlflow.log_metrics(metrics)
            info = mlflow.pyfunc.log_model(
                name="model",
                python_model=PromoteModel(),
                artifacts={"estimator": os.path.join(tmp, "estimator.joblib"), "fault": os.path.join(tmp, "fault.json")},
                code_paths=[os.path.join(os.path.dirname(os.path.abspath(__file__)), "promote_model.py")],
                signature=signature,
                input_example=Xh.head(2),
                registered_model_name=args.model,
            )
            version = info.registered_model_version
            client.set_model_version_tag(args.model, version, "promote.version_label", label)
            client.set_model_version_tag(args.model, version, "promote.story", story)
            print(f"{args.model} {label}: registered as version {version}: auc {metrics['auc']:.4f}, log_loss {metrics['log_loss']:.4f}")
    if client.get_registered_model(args.model).aliases.get("champion") is None:
        v1 = existing.get("v1") or next(
            mv.version for mv in client.search_model_versions(f"name='{args.model}'") if mv.tags.get("promote.version_label") == "v1"
        )
        client.set_registered_model_alias(args.model, "champion", v1)
        print(f"{args.model}: champion -> version {v1}")


if __name__ == "__main__":
    main()
