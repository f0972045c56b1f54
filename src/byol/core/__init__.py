"""BYOL itself, in plain PyTorch: nothing here imports the rest of byol, Lightning or a config.

    model.py      BYOL: online network, EMA target, projector and predictor on a hidden layer;
                  ModelSpec, the settings of all that
    heads.py      the projector/predictor MLP
    loss.py       the normalised regression loss, symmetrised
    ema.py        the target's exponential moving average and its cosine tau schedule
    augment.py    the paper's two views, batched on any device (and per image for workers)
    optim.py      LARS (biases and norms left alone), parameter groups, the cosine lr schedule
    backbones.py  ResNets (CIFAR and ImageNet stems) and building a backbone by name
"""
