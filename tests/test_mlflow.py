"""MLflow, the real package, with a file store in a temporary folder: params, metrics, the run's
files as artifacts, and evaluations nested under the pretraining run."""
import json

import pytest

from byol.cli import main

from conftest import TINY

mlflow = pytest.importorskip("mlflow", reason="mlflow is not installed (pip install 'byol[mlflow]')")


@pytest.fixture
def store(tmp_path, monkeypatch):
    monkeypatch.setenv("MLFLOW_ALLOW_FILE_STORE", "true")  # MLflow 3 asks for a database unless told
    return f"file://{tmp_path / 'mlruns'}"


def test_a_run_logs_params_metrics_and_its_files(demo_data, tmp_path, store, capsys):
    out = tmp_path / "run"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--data.val_path", str(demo_data / "test"),
                 "--train.epochs", "1", "--train.knn_every", "1", "--train.out_dir", str(out),
                 "--mlflow-uri", store, "--mlflow-experiment-name", "byol-test", *TINY, "--train.log_every", "2"]) == 0
    client = mlflow.tracking.MlflowClient(store)
    experiment = client.get_experiment_by_name("byol-test")
    (run,) = client.search_runs([experiment.experiment_id])
    assert "train/loss_epoch" in run.data.metrics and "knn/top1" in run.data.metrics
    assert any(k.startswith("config") for k in run.data.params)
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id)}
    assert {"config.yaml", "summary.json", "knn.json", "report.html", "backbone.safetensors"} <= artifacts
    assert "loss.png" in artifacts and "knn.png" in artifacts
    assert (out / "backbone.safetensors").exists()

    # an evaluation of that checkpoint, nested under the pretraining run
    capsys.readouterr()
    assert main(["evaluate", "knn", "--checkpoint", str(out / "checkpoints" / "last.ckpt"),
                 "--train", str(demo_data / "train"), "--test", str(demo_data / "test"), "-k", "10",
                 "--mlflow-uri", store, "--mlflow-experiment-name", "byol-test",
                 "--mlflow-run-id", run.info.run_id]) == 0
    top1 = json.loads(capsys.readouterr().out.strip().splitlines()[-1])["top1"]
    runs = client.search_runs([experiment.experiment_id], filter_string="tags.mlflow.runName = 'evaluate-knn'")
    assert len(runs) == 1 and runs[0].data.tags["mlflow.parentRunId"] == run.info.run_id
    assert runs[0].data.metrics["top1"] == pytest.approx(top1)
