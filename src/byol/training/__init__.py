"""Pretraining with Lightning: the BYOL step (module.py), the callbacks around it
(callbacks.py), the data a config asks for (data.py) and pretrain() (pretrain.py)."""
