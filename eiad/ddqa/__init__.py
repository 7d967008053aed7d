"""DDQA: the four defect question-answering tasks of EIAD, built from organised samples.

Conventions (the README's "DDQA" section explains them):

* **AD** on every image: "No." / "Yes.".
* **DC** on defective images: the true defect and up to 3 distractors from the other defect
  names of the same dataset; when the dataset has too few, the pool of every dataset in the
  build fills in. An image whose pool offers no distractor at all gets no DC record (counted).
* **RDL** on defective images: the 3x3 grid cell holding the centroid of the mask's largest
  connected component (8-connectivity); several defects: the largest decides.
* **DFM** on defective images: one pixel-edge box per connected component whose area is at
  least ``dfm_min_area`` of the image (the largest component is always kept), normalised to
  [0, 1] with 3 decimals: ``[x1, y1, x2, y2]`` for one box, ``[[x1, y1, x2, y2], ...]`` sorted
  top to bottom, then left to right, for several.
* Options are shuffled per record by a generator keyed by (seed, task, image), or kept in the
  figure's order (No/Yes, grid order, vocabulary order) when ``shuffle_options`` is false.
* The test split holds whole groups (parts photographed several times), drawn per stratum
  (dataset, class, defect) with ``test_ratio``.
"""
