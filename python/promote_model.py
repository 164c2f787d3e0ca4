"""The pyfunc wrapper every promote demo model is served through.

It returns the positive-class probability as the score. It also carries an explicit, documented
fault knob, used by the demo's regression model (v3), that only bites under load: once the model has
been called more than `fault.load_threshold_rps` times in the trailing second, `fault.latency_ms`
is added to each call and `fault.error_rate` of the calls fail. Offline evaluation (a couple of
batch calls) does not trip it; live traffic does. The knob lives in the model's own artifacts
(fault.json), so the behaviour is part of the registered version.
"""

import json
import collections
import random
import threading
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
        self.load_threshold_rps = float(fault.get("load_threshold_rps", 0))
        self.features = list(self.model.feature_names_in_)
        self.calls = collections.deque()
        self.lock = threading.Lock()

    def _under_load(self):
        now = time.monotonic()
        with self.lock:
            self.calls.append(now)
            while self.calls and self.calls[0] < now - 1.0:
                self.calls.popleft()
            return len(self.calls) > self.load_threshold_rps

    def predict(self, context, model_input: pd.DataFrame, params=None):
        if (self.latency_ms > 0 or self.error_rate > 0) and self._under_load():
            if self.latency_ms > 0:
                time.sleep(self.latency_ms / 1000.0)
            if random.random() < self.error_rate:
                raise RuntimeError("injected fault under load (fault.error_rate in this model version's fault.json)")
        return self.model.predict_proba(model_input[self.features])[:, 1]
