"""The README's Python API example runs as written."""
import re
from pathlib import Path

import torch
from torch import nn


class MyNet(nn.Module):
    def __init__(self):
        super().__init__()
        self.conv = nn.Sequential(nn.Conv2d(3, 8, 3, padding=1), nn.BatchNorm2d(8), nn.ReLU())
        self.avgpool = nn.AdaptiveAvgPool2d(1)
        self.fc = nn.Linear(8, 10)

    def forward(self, x):
        return self.fc(torch.flatten(self.avgpool(self.conv(x)), 1))


def test_readme_api_example(tmp_path, monkeypatch):
    text = (Path(__file__).resolve().parents[1] / "README.md").read_text()
    code = re.search(r"## Python API\s+```python\n(.*?)```", text, re.S).group(1)
    monkeypatch.chdir(tmp_path)
    loader = [torch.randint(0, 256, (8, 3, 32, 32), dtype=torch.uint8) for _ in range(3)]
    namespace = {"MyNet": MyNet, "loader": loader, "total_steps": 3}
    exec(compile(code, "README.md", "exec"), namespace)
    assert (tmp_path / "pretrained.pt").exists()
    assert namespace["model"].target.training and isinstance(namespace["net"], MyNet)
