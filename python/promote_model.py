"""The pyfunc wrapper every promote demo model is served through.

It returns the positive-class probability as the score. It also carries an explicit, documented
fault knob, used by the demo's regression model (v3): `fault.latency_ms` adds that much latency to
every prediction call and `fault.error_rate` makes that fraction of calls fail. The knob lives in
the model's own artifacts (fault.json), so the behaviour is part of the registered version.
"""

import json
import random
import time

import joblib
import mlflow.pyfunc
import pandas as pd


class PromoteModel(mlflow.pyfunc.PythonModel):
    def load_context(self, context):
        self.model = joblib.load(context.artifacts["estimator"])
        with open(context.artifacts["fault"], encoding="utf-8") as f:
            fault = json.load(f)
        self.latency_ms = float(fault.get("latency_ms", 0))
        self.error_rate = float(fault.get("error_rate", 0))
        self.features = list(self.model.feature_names_in_)

    def predict(self, context, model_input: pd.DataFrame, params=None):
        if self.latency_ms > 0:
            time.sleep(self.latency_ms / 1000.0)
        if self.error_rate > 0 and random.random() < self.error_rate:
            raise RuntimeError("injected fault (fault.error_rate in this model version's fault.json)")
        return self.model.predict_proba(model_input[self.features])[:, 1]
