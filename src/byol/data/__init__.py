"""Where images come from: folders and tar archives listed and read (listing.py), data sets over
them in memory or streamed and video frame pairs (image_sets.py), subsets and held-out splits
(splits.py), decoding (decode.py), standard data sets (datasets.py), WebDataset shards
(shards.py), resized copies (cache.py), resumable sampling and loading (loader.py) and the
generated demo set (demo.py). Uses byol.core and byol.checkpoint's atomic writes only."""
