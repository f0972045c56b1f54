"""Where images come from: folders and tar archives (images.py), standard data sets
(datasets.py), WebDataset shards (shards.py), resumable sampling and loading (loader.py) and
the generated demo set (demo.py). Uses byol.core and byol.checkpoint's atomic writes only."""
