"""Data from files, read one way for every use: the numerical check of an import, evaluation,
calibration and training in optimize, and the reference a version's live inputs are compared with."""

from shipyard.datasets.files import Dataset, dataset_info, load_data, sample_rows

__all__ = ["Dataset", "dataset_info", "load_data", "sample_rows"]
