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


def test_uris_that_cannot_work_are_one_line_before_any_work(demo_data, tmp_path, monkeypatch, capsys):
    import importlib.util
    import socket
    import time

    monkeypatch.delenv("MLFLOW_ALLOW_FILE_STORE", raising=False)
    out = tmp_path / "run"
    base = ["pretrain", "--data.path", str(demo_data / "train"), "--train.epochs", "1", "--train.out_dir", str(out),
            *TINY]
    cases = [(f"file://{tmp_path / 'mlruns'}", "MLFLOW_ALLOW_FILE_STORE=true"),
             ("http://127.0.0.1:9", "no MLflow server answers at 127.0.0.1:9")]
    if importlib.util.find_spec("sqlalchemy") is None:  # mlflow-skinny: no database store
        cases.append((f"sqlite:///{tmp_path / 'm.db'}", "pip install 'byol[mlflow]'"))
    silent = socket.socket()  # accepts connections (the kernel's backlog) and never answers
    silent.bind(("127.0.0.1", 0))
    silent.listen()
    cases += [(f"http://127.0.0.1:{silent.getsockname()[1]}", "gave no HTTP answer within"),
              ("bogus://x", "not bogus://"), ("http://[::1", "is not a valid URI")]
    for uri, says in cases:
        start = time.time()
        assert main([*base, "--mlflow-uri", uri]) == 2
        err = capsys.readouterr().err.strip()
        assert len(err.splitlines()) == 1 and says in err and uri in err, err
        assert time.time() - start < 30 and not out.exists()  # no hang, no run folder
        assert main(["evaluate", "knn", "--checkpoint", str(tmp_path / "none.ckpt"), "--train", "x", "--test", "y",
                     "--mlflow-uri", uri]) == 2
        assert says in capsys.readouterr().err  # checked before the checkpoint is even read


def test_a_real_sqlite_store_where_the_database_extra_is_installed(demo_data, tmp_path):
    pytest.importorskip("sqlalchemy", reason="mlflow-skinny here: the sqlite store needs pip install 'byol[mlflow]'")
    pytest.importorskip("alembic")
    uri = f"sqlite:///{tmp_path / 'm.db'}"
    assert main(["pretrain", "--data.path", str(demo_data / "train"), "--train.epochs", "1", "--train.knn_every", "0",
                 "--train.out_dir", str(tmp_path / "run"), "--mlflow-uri", uri, *TINY]) == 0
    client = mlflow.tracking.MlflowClient(uri)
    (run,) = client.search_runs([e.experiment_id for e in client.search_experiments()])
    assert "train/loss_epoch" in run.data.metrics
