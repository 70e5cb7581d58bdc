"""``BaseModel`` and the data preprocessors (MMEngine's ``mmengine.model.base_model`` path)."""

from fengine.model.base_model.base_model import BaseModel
from fengine.model.base_model.data_preprocessor import BaseDataPreprocessor, ImgDataPreprocessor

__all__ = ["BaseDataPreprocessor", "BaseModel", "ImgDataPreprocessor"]
