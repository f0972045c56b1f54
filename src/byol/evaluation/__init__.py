"""What a pretrained backbone is worth: features and the kNN / linear / logistic / fine-tuning
protocols (protocols.py), evaluating a saved checkpoint or export (saved.py), the run report
(report.py) and the augmentation preview (preview.py). Uses core, data, checkpoint and config."""
